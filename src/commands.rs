//! The `partway` command line: the all-in-one service (the default), its admin
//! commands (migrate, keys, tokens, owners, openapi) and the client commands (upload, status, abort, ls).
use clap::{Parser, Subcommand};
use partway::{connect_database, migrate, Application};
use partway_core::{
    auth,
    config::Config,
    domain::{OwnerLimit, QuotaOverride},
    store::owners::quota_override,
};

/// partway: resumable multipart uploads to S3-compatible storage.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the all-in-one service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Mint browser tokens (short-lived credentials for web pages).
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Webhook endpoints (signed events for applications).
    Webhooks {
        #[command(subcommand)]
        action: crate::webhook_commands::WebhooksAction,
    },
    /// Owners and their quotas.
    Owners {
        #[command(subcommand)]
        action: OwnersAction,
    },
    /// Print the OpenAPI spec (YAML).
    Openapi,
    /// Upload a file (resumable: run the same command again after an interruption).
    Upload(UploadArgs),
    /// Show an upload's status.
    Status {
        /// The resume token (mpu_…).
        token: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Abort an upload.
    Abort {
        /// The resume token (mpu_…).
        token: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your uploads, newest first.
    Ls {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the uploads as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the partway server is, and the API key.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Base URL of the partway server.
    #[arg(long, env = "PARTWAY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key.
    #[arg(long, env = "PARTWAY_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<partway_client::Client> {
        partway_client::Client::new(&self.server, self.key.as_deref().unwrap_or(""))
            .map_err(anyhow::Error::msg)
    }
}

#[derive(clap::Args)]
pub struct UploadArgs {
    /// The file to upload.
    file: std::path::PathBuf,
    #[command(flatten)]
    server: ServerArgs,
    /// Parts in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// Part size, e.g. 8MiB (plain numbers are bytes); the server chooses when omitted.
    #[arg(long, value_parser = partway_client::parse_size)]
    part_size: Option<u64>,
    /// Print one JSON object describing the upload as the last line.
    #[arg(long)]
    json: bool,
    /// Test hook: sleep this long before each part.
    #[arg(long, env = "PARTWAY_CLIENT_PART_DELAY_MS", hide = true)]
    part_delay_ms: Option<u64>,
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Create a key; the key alone is printed on the last line.
    Create {
        #[arg(long)]
        owner: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
    /// Re-seal every stored bring-your-own credential under a new master key. Stop the
    /// service first. The current key is PARTWAY_MASTER_KEY or the data dir's
    /// master.key (which then receives the new key); otherwise set PARTWAY_MASTER_KEY to
    /// the new key before starting again. Safe to run again after an interruption.
    RotateMaster {
        /// File holding the new master key (32 bytes, hex or base64); without it,
        /// PARTWAY_NEW_MASTER_KEY.
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokensAction {
    /// Mint a browser token for an owner (created when new); the token alone is printed
    /// on the last line. It is stored hashed and never shown again.
    Create {
        #[arg(long)]
        owner: String,
        /// How long it lives: 60s ..= 24h, e.g. 30m, 3600s (default 1h).
        #[arg(long, value_parser = parse_expires_in)]
        expires_in: Option<u64>,
        /// The largest file an upload with it may declare, e.g. 100MiB.
        #[arg(long, value_parser = partway_client::parse_size)]
        max_file_size: Option<u64>,
        /// Allowed content types, comma-separated (`image/*,application/pdf`).
        #[arg(long, value_delimiter = ',')]
        allowed_content_types: Option<Vec<String>>,
        /// How many uploads it may start.
        #[arg(long)]
        max_uploads: Option<u64>,
        /// A name shown in lists.
        #[arg(long)]
        label: Option<String>,
    },
}

fn parse_expires_in(text: &str) -> Result<u64, String> {
    partway_core::config::parse_duration(text).map(|d| d.as_secs())
}

#[derive(Subcommand)]
pub enum OwnersAction {
    /// Set an owner's quota overrides (the owner is created when new); a limit left
    /// out keeps its current value.
    SetQuota {
        owner: String,
        /// Unfinished uploads: a number, `unlimited`, or `default` (the server's).
        #[arg(long, value_parser = parse_count_limit)]
        max_active_uploads: Option<OwnerLimit>,
        /// Their declared bytes: a number or size (`10GiB`), `unlimited` or `default`.
        #[arg(long, value_parser = parse_bytes_limit)]
        max_active_bytes: Option<OwnerLimit>,
    },
    /// List owners with their overrides and what they hold now.
    List,
}

fn parse_count_limit(text: &str) -> Result<OwnerLimit, String> {
    OwnerLimit::parse(text, false)
}

fn parse_bytes_limit(text: &str) -> Result<OwnerLimit, String> {
    OwnerLimit::parse(text, true)
}

/// Runs one command. The client commands need no server configuration.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Upload(args) => upload(args).await,
        Command::Status {
            token,
            server,
            json,
        } => {
            let doc = server
                .client()?
                .status(&token)
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", doc.json);
            } else {
                print!("{}", partway_client::format_status(&doc.doc));
            }
            Ok(())
        }
        Command::Abort { token, server } => {
            let status = server
                .client()?
                .abort(&token)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("{token}: {status}");
            Ok(())
        }
        Command::Ls { server, json } => {
            let uploads = server.client()?.list().await.map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", uploads.json);
            } else {
                print!("{}", partway_client::format_table(&uploads.doc));
            }
            Ok(())
        }
        Command::Serve => {
            let config = Config::load()?;
            partway_runtime::init_logging(config.log_format);
            serve(config).await
        }
        Command::Migrate => {
            let db = connect_database(&Config::load()?).await?;
            migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { action } => keys(Config::load()?, action).await,
        Command::Owners { action } => owners(Config::load()?, action).await,
        Command::Tokens { action } => tokens(Config::load()?, action).await,
        Command::Webhooks { action } => {
            crate::webhook_commands::webhooks(Config::load()?, action).await
        }
        Command::Openapi => {
            print!("{}", partway::openapi_yaml());
            Ok(())
        }
    }
}

async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let options = partway_client::UploadOptions {
        file: args.file,
        parallel: usize::from(args.parallel),
        part_size: args.part_size,
        progress: true,
        part_delay: args.part_delay_ms.map(std::time::Duration::from_millis),
    };
    let outcome = client.upload(&options).await.map_err(anyhow::Error::msg)?;
    let secs = outcome.elapsed.as_secs_f64();
    eprintln!(
        "partway: uploaded {} ({} parts{}) in {:.1}s, {:.1} MiB/s",
        options.file.display(),
        outcome.total_parts,
        if outcome.resumed { ", resumed" } else { "" },
        secs,
        outcome.bytes_uploaded as f64 / 1048576.0 / secs.max(0.001)
    );
    if args.json {
        println!("{}", outcome.to_json());
    } else {
        println!("{}", outcome.url);
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await?;
    let url = app.base_url();
    println!("partway is running");
    println!("  API:       {url}/api/v1");
    println!("  Docs:      {url}/docs");
    println!("  OpenAPI:   {url}/openapi.yaml");
    if let Some(s3) = app.embedded_s3_endpoint() {
        println!("  Storage:   {s3} (embedded S3 endpoint)");
    }
    let key = Some(app.dev_api_key()).filter(|k| !k.is_empty());
    // A ready link to the upload page, with a development browser token: like the key,
    // printed only when the API listens on loopback and the development key is on.
    if let (Some(addr), Some(_)) = (app.local_addr(), key) {
        if addr.ip().is_loopback() {
            let token = app.dev_browser_token().await?;
            println!("  Upload:    {url}/upload#token={token}");
        }
    }
    if let Some(addr) = app.local_addr() {
        for line in partway::dev_key_lines(addr, key, &data_dir) {
            println!("{line}");
        }
    }
    partway_runtime::shutdown_signal().await;
    println!("shutting down");
    app.shutdown().await;
    Ok(())
}

async fn keys(config: Config, action: KeysAction) -> anyhow::Result<()> {
    let db = connect_database(&config).await?;
    migrate(&db).await?;
    let db = partway_core::store::Store::new(db);
    match action {
        KeysAction::Create { owner } => {
            let (model, key) = auth::create_key(&db, &owner).await?;
            eprintln!(
                "created key {} for owner {owner}; it is shown once:",
                model.id
            );
            println!("{key}");
        }
        KeysAction::RotateMaster { new_key_file } => {
            let text = match new_key_file {
                Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("cannot read the new key from {}: {e}", path.display())
                })?,
                None => std::env::var("PARTWAY_NEW_MASTER_KEY").map_err(|_| {
                    anyhow::anyhow!(
                        "give the new master key: --new-key-file PATH or PARTWAY_NEW_MASTER_KEY"
                    )
                })?,
            };
            let (done, in_data_dir) = partway::rotate_master_key(&config, &db, &text).await?;
            eprintln!(
                "re-sealed {} upload(s); {} already under the new key; {} could not be opened with either key",
                done.resealed, done.already, done.unreadable
            );
            if in_data_dir {
                eprintln!("master.key in the data dir now holds the new key");
            } else {
                eprintln!("set PARTWAY_MASTER_KEY to the new key before starting partway again");
            }
        }
        KeysAction::List => {
            let keys = auth::list_keys(&db).await?;
            println!(
                "{:<36}  {:<16}  {:<12}  {:<20}  revoked",
                "id", "owner", "prefix", "created"
            );
            for (key, owner) in keys {
                println!(
                    "{:<36}  {:<16}  {:<12}  {:<20}  {}",
                    key.id,
                    owner,
                    key.prefix,
                    key.created_at.format("%Y-%m-%d %H:%M:%S"),
                    key.revoked_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysAction::Revoke { id } => {
            auth::revoke_key(&db, id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn tokens(config: Config, action: TokensAction) -> anyhow::Result<()> {
    let db = connect_database(&config).await?;
    migrate(&db).await?;
    let db = partway_core::store::Store::new(db);
    match action {
        TokensAction::Create {
            owner,
            expires_in,
            max_file_size,
            allowed_content_types,
            max_uploads,
            label,
        } => {
            let limits = partway_core::domain::TokenLimits {
                expires_in,
                max_file_size,
                allowed_content_types,
                max_uploads,
                metadata: None,
                label,
            };
            let (model, token) =
                partway_core::browser_token::create_for_owner(&db, &owner, &limits).await?;
            eprintln!(
                "created browser token {} for owner {owner}, valid until {}; it is shown once:",
                model.id,
                model.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            println!("{token}");
        }
    }
    Ok(())
}

async fn owners(config: Config, action: OwnersAction) -> anyhow::Result<()> {
    let db = connect_database(&config).await?;
    migrate(&db).await?;
    let db = partway_core::store::Store::new(db);
    match action {
        OwnersAction::SetQuota {
            owner,
            max_active_uploads,
            max_active_bytes,
        } => {
            let current = db
                .owners()
                .await?
                .into_iter()
                .find(|(o, _)| o.name == owner)
                .map(|(o, _)| quota_override(&o))
                .unwrap_or_default();
            let wanted = QuotaOverride {
                max_active_uploads: max_active_uploads.unwrap_or(current.max_active_uploads),
                max_active_bytes: max_active_bytes.unwrap_or(current.max_active_bytes),
            };
            let saved = quota_override(&db.set_owner_quota(&owner, wanted).await?);
            println!(
                "{owner}: max active uploads {}, max active bytes {}",
                saved.max_active_uploads, saved.max_active_bytes
            );
        }
        OwnersAction::List => {
            let defaults = config.quota();
            let show =
                |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
            println!(
                "defaults: max active uploads {}, max active bytes {}",
                show(defaults.max_active_uploads),
                show(defaults.max_active_bytes)
            );
            println!(
                "{:<24}  {:>18}  {:>18}  {:>10}  {:>16}",
                "owner", "max uploads", "max bytes", "uploads", "bytes"
            );
            for (owner, held) in db.owners().await? {
                let own = quota_override(&owner);
                println!(
                    "{:<24}  {:>18}  {:>18}  {:>10}  {:>16}",
                    owner.name,
                    own.max_active_uploads,
                    own.max_active_bytes,
                    held.uploads,
                    held.bytes
                );
            }
        }
    }
    Ok(())
}
