//! `partway webhooks …`: webhook endpoints from the command line (DESIGN §6), beside
//! `partway keys`. Works on the database directly, like `keys`; the secret is printed
//! once, alone on the last line of `create`.
use clap::Subcommand;
use partway_core::{
    config::Config,
    events::EventType,
    store::Store,
    usecases::webhooks::{create_for_owner, events_of, WebhookInput},
};
use partway_runtime::{connect_database, migrate};

#[derive(Subcommand)]
pub enum WebhooksAction {
    /// Register an endpoint for an owner (created when new); its signing secret
    /// (`whsec_…`) alone is printed on the last line, this once.
    Create {
        #[arg(long)]
        owner: String,
        /// Where events are POSTed (http or https; the outbound guard applies).
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (default: all of them).
        #[arg(long, value_delimiter = ',', value_parser = parse_event_type)]
        events: Option<Vec<EventType>>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List every endpoint (never the secrets).
    List,
    /// Delete an endpoint by id.
    Delete { id: uuid::Uuid },
}

fn parse_event_type(text: &str) -> Result<EventType, String> {
    text.trim().parse()
}

pub async fn webhooks(config: Config, action: WebhooksAction) -> anyhow::Result<()> {
    let db = connect_database(&config).await?;
    migrate(&db).await?;
    let store = Store::new(db);
    match action {
        WebhooksAction::Create {
            owner,
            url,
            events,
            description,
        } => {
            // PARTWAY_MASTER_KEY, else the data dir's master.key (as `keys rotate-master`).
            let in_data_dir = config.master_key.is_none();
            let master_key = partway_runtime::master_key(
                &config,
                in_data_dir.then_some(config.data_dir.as_path()),
            )?;
            let outbound = partway_runtime::outbound_policy(&config, &Default::default())?;
            let input = WebhookInput {
                url,
                events: events.unwrap_or_else(|| EventType::ALL.to_vec()),
                description,
            };
            let (row, secret) = create_for_owner(&store, &master_key, &outbound, &owner, input)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "created webhook {} for owner {owner} ({}); its secret is shown once:",
                row.id,
                events_of(&row).join(",")
            );
            println!("{secret}");
        }
        WebhooksAction::List => {
            for row in store.all_webhooks().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    row.id,
                    row.owner_id,
                    if row.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "enabled"
                    },
                    events_of(&row).join(","),
                    row.url
                );
            }
        }
        WebhooksAction::Delete { id } => {
            if store.delete_webhook_any_owner(id).await? {
                println!("deleted {id}");
            } else {
                anyhow::bail!("no webhook with id {id}");
            }
        }
    }
    Ok(())
}
