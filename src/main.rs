use std::process::ExitCode;

use clap::{Parser, Subcommand};
use partway::{connect_database, migrate, Application};
use partway_core::{auth, config::Config};

/// partway: resumable multipart uploads to S3-compatible storage.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the all-in-one service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print the OpenAPI spec (YAML).
    Openapi,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; the key alone is printed on the last line.
    Create {
        #[arg(long)]
        owner: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    partway_runtime::exit_with("partway", run(cli).await)
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            partway_runtime::init_logging(config.log_format);
            serve(config).await
        }
        Command::Migrate => {
            let db = connect_database(&config).await.map_err(|e| e.to_string())?;
            migrate(&db).await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { action } => keys(config, action).await,
        Command::Openapi => {
            print!("{}", partway::openapi_yaml());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let url = app.base_url();
    println!("partway is running");
    println!("  API:       {url}/api/v1");
    println!("  Docs:      {url}/docs");
    println!("  OpenAPI:   {url}/openapi.yaml");
    if let Some(s3) = app.embedded_s3_endpoint() {
        println!("  Storage:   {s3} (embedded S3 endpoint)");
    }
    if let Some(key) = app.dev_api_key() {
        println!("  Dev key:   {key}");
        println!();
        println!("  curl -H 'x-api-key: {key}' {url}/api/v1/uploads");
    }
    partway_runtime::shutdown_signal().await;
    println!("shutting down");
    app.shutdown().await;
    Ok(())
}

async fn keys(config: Config, action: KeysAction) -> Result<(), String> {
    let db = connect_database(&config).await.map_err(|e| e.to_string())?;
    migrate(&db).await.map_err(|e| e.to_string())?;
    match action {
        KeysAction::Create { owner } => {
            let (model, key) = auth::create_key(&db, &owner)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "created key {} for owner {owner}; it is shown once:",
                model.id
            );
            println!("{key}");
        }
        KeysAction::List => {
            let keys = auth::list_keys(&db).await.map_err(|e| e.to_string())?;
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
            auth::revoke_key(&db, id).await.map_err(|e| e.to_string())?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
