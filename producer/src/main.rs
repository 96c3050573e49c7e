//! `sessionfold-producer`: the HTTP ingest, and a traffic simulator.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use sessionfold_edge::{CommonArgs, ServiceCli, parse_duration};
use sessionfold_producer::client::Client;
use sessionfold_producer::input::address::AddressPolicy;
use sessionfold_producer::simulate::{SimConfig, simulate};
use sessionfold_producer::{Framing, Limits, Settings, run};

/// What `--help` says this binary does.
const ABOUT: &str = "Accepts JSON events over HTTP and writes them to Kafka as Avro.";

type Cli = ServiceCli<Command, ServeArgs>;

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR network"))
}

/// How much of a client's IP address is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientIp {
    /// The network part only: IPv4 to /24, IPv6 to /48.
    Anonymized,
    /// The whole address.
    Full,
    /// No address.
    None,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the ingest API (the default).
    Serve(Box<ServeArgs>),
    /// Send realistic traffic to a running producer.
    Simulate(SimulateArgs),
    /// Forget a user: write the erasure straight to the broker (the same
    /// record `POST /v1/users/{user_id}/erasure` writes).
    Forget(ForgetArgs),
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("imports").required(true).args(["delete_imports", "transfer_imports_to"])))]
struct ForgetArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The user to forget.
    user_id: String,
    /// Delete the imports the user owns.
    #[arg(long)]
    delete_imports: bool,
    /// Give the imports the user owns to this user.
    #[arg(long, value_name = "USER_ID")]
    transfer_imports_to: Option<String>,
    /// Who asks, as recorded with the erasure.
    #[arg(long, default_value = "cli")]
    requested_by: String,
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: sessionfold_auth::AuthArgs,
    /// HTTP address to listen on.
    #[arg(long, env = "SESSIONFOLD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// An event time further ahead of the time received than this is clamped to the time received.
    #[arg(long, env = "SESSIONFOLD_MAX_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    max_clock_skew: Duration,
    /// Largest request body, in bytes.
    #[arg(long, env = "SESSIONFOLD_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most events in one request.
    #[arg(long, env = "SESSIONFOLD_MAX_EVENTS", default_value_t = 1000)]
    max_events: usize,
    /// Events buffered while the broker is unreachable; past this, requests get 503.
    #[arg(long, env = "SESSIONFOLD_BUFFER_MESSAGES", default_value_t = 100_000)]
    buffer_messages: usize,
    /// How events are framed on the input topics: Avro single-object
    /// encoding, or the Schema Registry wire format (needs
    /// `--schema-registry-url`; subjects `<topic>-value`).
    #[arg(long, env = "SESSIONFOLD_WIRE_FORMAT", value_enum, default_value_t = WireFormat::SingleObject)]
    wire_format: WireFormat,
    /// How much of a client's IP address a session start records: the
    /// network part only (IPv4 /24, IPv6 /48), all of it, or nothing.
    #[arg(long, env = "SESSIONFOLD_CLIENT_IP", value_enum, default_value_t = ClientIp::Anonymized)]
    client_ip: ClientIp,
    /// A proxy (address or CIDR) whose `X-Forwarded-For` names the client;
    /// repeat for several. Without one the connection's peer is the client.
    #[arg(long, env = "SESSIONFOLD_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// A web origin (such as `https://app.example.com`) whose pages may call
    /// the ingest from the browser; repeat for several. None: no CORS.
    #[arg(long, env = "SESSIONFOLD_CORS_ORIGIN", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// Key of the end tickets browser tabs send when they close. Set the same
    /// value on every producer behind one address; unset, each process
    /// picks a random key and accepts only its own tickets.
    #[arg(long, env = "SESSIONFOLD_END_TICKET_SECRET", hide_env_values = true)]
    end_ticket_secret: Option<String>,
    /// Longest a request that waits for the broker's acknowledgement
    /// (`?ack=broker`, the default for import events) waits; past it the
    /// answer is 503 and the caller sends the events again.
    #[arg(long, env = "SESSIONFOLD_ACK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    ack_timeout: Duration,
    /// How long an end ticket is good for.
    #[arg(long, env = "SESSIONFOLD_END_TICKET_LIFETIME", default_value = "15m", value_parser = parse_duration)]
    end_ticket_lifetime: Duration,
}

/// The `--wire-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WireFormat {
    /// `C3 01`, the schema fingerprint, the body.
    SingleObject,
    /// `00`, the registry's schema id, the body.
    Registry,
}

#[derive(Debug, Clone, clap::Args)]
struct SimulateArgs {
    /// Base URL of the producer.
    #[arg(
        long,
        env = "SESSIONFOLD_PRODUCER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    producer_url: String,
    /// Bearer token to send; it must carry the service role.
    #[arg(long, env = "SESSIONFOLD_TOKEN")]
    token: Option<String>,
    /// Without --token: sign a one-day service token with this HS256 secret.
    #[arg(long, env = "SESSIONFOLD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Distinct simulated users.
    #[arg(long, env = "SESSIONFOLD_SIM_USERS", default_value_t = 50)]
    users: usize,
    /// Events per second.
    #[arg(long, env = "SESSIONFOLD_SIM_RATE", default_value_t = 20.0)]
    rate: f64,
    /// How long to run.
    #[arg(long, env = "SESSIONFOLD_SIM_DURATION", default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the random choices.
    #[arg(long, env = "SESSIONFOLD_SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Tag of this run in session and import ids (default: the start time in
    /// seconds), so that a second run does not write to the first run's ended
    /// sessions and finished imports.
    #[arg(long, env = "SESSIONFOLD_SIM_RUN")]
    run: Option<u64>,
    /// Admins running imports at once (0: activity only).
    #[arg(long, env = "SESSIONFOLD_SIM_ADMINS", default_value_t = 4)]
    admins: usize,
    /// Share of the events that are import events, 0 to 1.
    #[arg(long, env = "SESSIONFOLD_SIM_IMPORT_SHARE", default_value_t = 0.05)]
    import_share: f64,
    /// Log format.
    #[arg(
        long,
        env = "SESSIONFOLD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: sessionfold_edge::LogFormat,
}

fn service_token(a: &SimulateArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = &a.token {
        return Ok(Some(t.clone()));
    }
    let Some(secret) = &a.jwt_secret else {
        return Ok(None);
    };
    let claims = sessionfold_auth::Claims::expiring_in(
        "simulator",
        vec![sessionfold_auth::ROLE_SERVICE.into()],
        Vec::new(),
        Duration::from_secs(24 * 3600),
    );
    Ok(Some(sessionfold_auth::mint_hs256(
        secret.as_bytes(),
        &claims,
    )?))
}

use sessionfold_edge::millis;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_as("sessionfold-producer", ABOUT);
    match cli.command {
        Some(Command::Simulate(a)) => {
            sessionfold_edge::init_logging(a.log_format);
            let mut client = Client::new(&a.producer_url);
            if let Some(t) = service_token(&a)? {
                client = client.with_token(t);
            }
            let report = simulate(
                &client,
                SimConfig {
                    users: a.users,
                    rate: a.rate,
                    duration: a.duration,
                    seed: a.seed,
                    admins: a.admins,
                    import_share: a.import_share,
                    run: a.run.unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                    }),
                },
            )
            .await
            .context("simulation stopped")?;
            tracing::info!(total = report.total(), by_kind = ?report.by_kind, "simulation done");
            Ok(())
        }
        Some(Command::Forget(a)) => forget(a).await,
        Some(Command::Serve(a)) => serve(*a).await,
        None => serve(cli.default).await,
    }
}

async fn forget(a: ForgetArgs) -> anyhow::Result<()> {
    a.common.init()?;
    let topics = a.common.topics();
    sessionfold_edge::ensure_topics(
        &a.common.brokers,
        &topics,
        a.common.partitions,
        Duration::from_secs(30),
    )
    .await?;
    let erasure = sessionfold_schemas::UserErased {
        user_id: a.user_id,
        erased_at: chrono::Utc::now().timestamp_millis(),
        requested_by: a.requested_by,
        imports: match a.transfer_imports_to {
            Some(to) => sessionfold_schemas::OwnedImports::TransferTo(to),
            None => sessionfold_schemas::OwnedImports::Delete,
        },
    };
    let contract = sessionfold_schemas::Contract::load()?;
    // The first erasure's rule stands: a repeat writes nothing, another rule
    // is refused (what the first did to the imports cannot be undone).
    let known = {
        let (brokers, topic, contract) = (
            a.common.brokers.clone(),
            topics.erasures.clone(),
            contract.clone(),
        );
        tokio::task::spawn_blocking(move || {
            sessionfold_edge::follow::read_erasures(&brokers, &topic, &contract)
        })
        .await??
    };
    if let Some(first) = known.get(&erasure.user_id) {
        if first.imports == erasure.imports {
            tracing::info!(user = %first.user_id, imports = ?first.imports, "user forgotten already with this rule; nothing written");
            return Ok(());
        }
        anyhow::bail!(
            "user {:?} was forgotten already with another rule for their imports ({:?}); that rule stands",
            first.user_id,
            first.imports
        );
    }
    sessionfold_edge::follow::publish_erasure(
        &a.common.brokers,
        &topics.erasures,
        &contract,
        &erasure,
    )
    .await
    .with_context(|| format!("forgetting {}", erasure.user_id))?;
    tracing::info!(user = %erasure.user_id, imports = ?erasure.imports, topic = %topics.erasures, "user forgotten");
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    a.common.init()?;
    // A bad origin stops the start, rather than serving without CORS.
    let _ = sessionfold_producer::beacon::cors(&a.cors_origin).context("--cors-origin")?;
    let auth = sessionfold_auth::Authenticator::from_args(&a.auth)?;
    if a.end_ticket_secret.is_some() && a.end_ticket_secret == a.auth.jwt_secret {
        anyhow::bail!(
            "--end-ticket-secret equals --jwt-secret: give end tickets a key of their own, so a ticket can never be taken for a bearer token"
        );
    }
    let tickets = sessionfold_producer::beacon::Tickets::new(
        a.end_ticket_secret.as_deref().map(str::as_bytes),
        a.end_ticket_lifetime,
    )?;
    sessionfold_edge::jwks::keep_fresh(&auth, &a.auth).await;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let framing = match a.wire_format {
        WireFormat::SingleObject => Framing::SingleObject,
        WireFormat::Registry => {
            let registry = sessionfold_edge::registry::Registry::from_args(&a.common.registry)?
                .context("--wire-format registry needs --schema-registry-url")?;
            Framing::registered(&registry, &a.common.topics()).await?
        }
    };
    let settings = Settings {
        framing,
        brokers: a.common.brokers.clone(),
        topics: a.common.topics(),
        partitions: a.common.partitions,
        limits: Limits {
            max_body_bytes: a.max_body_bytes,
            max_events: a.max_events,
            max_clock_skew: millis(a.max_clock_skew),
            addresses: match a.client_ip {
                ClientIp::Anonymized => AddressPolicy::Anonymized,
                ClientIp::Full => AddressPolicy::Full,
                ClientIp::None => AddressPolicy::None,
            },
            trusted_proxies: a.trusted_proxy,
            cors_origins: a.cors_origin,
            ack_timeout: a.ack_timeout,
        },
        buffer_messages: a.buffer_messages,
        auth,
        tickets,
    };
    run(listener, settings, sessionfold_edge::shutdown_signal())
        .await
        .context("producer stopped")
}
