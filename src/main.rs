//! The `haltwatch` command: parses arguments, sets up tracing, loads the
//! config and calls the library. The only place that uses `anyhow`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use haltwatch::render::{self, Explorers};
use haltwatch::store::{IncidentFilter, Store};
use haltwatch::{config, demo, notify, pipeline};

#[derive(Parser)]
#[command(
    name = "haltwatch",
    version,
    about = "Circuit-breaker monitor for DeFi protocols"
)]
struct Cli {
    /// Config file (TOML); relative paths in it resolve against its folder.
    #[arg(
        long,
        global = true,
        env = "HALTWATCH_CONFIG",
        default_value = "config/haltwatch.toml"
    )]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the configured chains and record incidents until Ctrl-C.
    Run,
    /// Validate the config and report every problem at once.
    CheckConfig,
    /// Read the halt history.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Start a local anvil chain, pause and unpause a demo protocol, print the incident.
    Demo,
    /// Send one test mail with the [email] settings and print the server's reply.
    SendTestEmail {
        /// Recipient address.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long)]
        chain: Option<String>,
        /// Only incidents that are still open.
        #[arg(long)]
        open: bool,
        /// Also list incidents withdrawn because a reorg removed their evidence.
        #[arg(long)]
        include_withdrawn: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one incident with its transitions and evidence.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => Ok(check_config(&cli.config)),
        Command::Run => {
            let config = config::load(&cli.config)?;
            let store = Store::open(&config.store).await?;
            tracing::info!(config = %cli.config.display(), chains = config.chains.len(),
                protocols = config.protocols.len(), "haltwatch running");
            pipeline::run(config, store, async {
                if let Err(e) = tokio::signal::ctrl_c().await {
                    tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
                }
                tracing::info!("shutting down");
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents { command } => incidents(&cli.config, command).await,
        Command::SendTestEmail { to } => {
            let config = config::load(&cli.config)?;
            let email = config.email.context("the config has no [email] section")?;
            println!(
                "sending a test mail via {}:{} to {}",
                email.smtp_host, email.smtp_port, to
            );
            let reply = notify::send_test(&email, &to).await?;
            println!(
                "accepted: {} {}",
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            let incident = demo::run(|line| println!("· {line}")).await?;
            println!();
            println!("{}", render::detail(&incident, &Explorers::new()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            let rules: usize = c.protocols.iter().map(|p| p.rules.len()).sum();
            println!(
                "{}: ok ({} chain(s), {} protocol(s), {} rule(s))",
                path.display(),
                c.chains.len(),
                c.protocols.len(),
                rules
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn incidents(path: &Path, command: IncidentsCommand) -> anyhow::Result<ExitCode> {
    let store_config = config::load_store(path)?;
    let store = Store::open(&store_config).await?;
    // Explorer links are a nicety: a config with other problems still lists the history.
    let explorers: Explorers = config::load(path)
        .map(|c| {
            c.chains
                .into_iter()
                .filter_map(|ch| ch.explorer_tx_url.map(|u| (ch.chain_id, u)))
                .collect()
        })
        .unwrap_or_default();
    match command {
        IncidentsCommand::List {
            protocol,
            chain,
            open,
            include_withdrawn,
            format,
        } => {
            let filter = IncidentFilter {
                protocol,
                chain,
                open_only: open,
                include_withdrawn,
            };
            let list = store.list(&filter).await?;
            match format {
                Format::Table => print!("{}", render::table(&list)),
                Format::Json => println!("{}", render::json(&list)),
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id, format } => {
            let incident = store
                .incident(id)
                .await?
                .with_context(|| format!("no incident with id {id}"))?;
            match format {
                Format::Table => print!("{}", render::detail(&incident, &explorers)),
                Format::Json => println!("{}", render::json(&incident)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
