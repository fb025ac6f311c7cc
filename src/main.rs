//! The `haltwatch` command: parses arguments, sets up tracing, loads the
//! config and calls the library. The only place that uses `anyhow`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use haltwatch::render::{self, Explorers};
use haltwatch::report::parse_time;
use haltwatch::store::{IncidentFilter, RunLock, Store};
use haltwatch::{config, demo, notify, pipeline};

/// The auditor's commands: `report` and `verify`.
mod commands {
    pub mod audit;
}

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
    /// Rebuild the halt history of a block range from the chain.
    Backfill {
        #[arg(long)]
        chain: String,
        #[arg(long)]
        from_block: u64,
        #[arg(long)]
        to_block: u64,
    },
    /// Uptime, downtime, MTTR, MTBF and cost per protocol for a period.
    Report {
        /// RFC 3339 time, or a span before now: 30d, 12h, 90m.
        #[arg(long)]
        since: String,
        /// RFC 3339 time, a span before now, or `now`.
        #[arg(long, default_value = "now")]
        until: String,
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Re-read recorded evidence from the chain, or check the history's hash chain.
    Verify {
        /// One incident; omit with --all.
        id: Option<i64>,
        /// Every incident.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Walk the tamper-evident ledger instead of the chain.
        #[arg(long, conflicts_with_all = ["id", "all"])]
        history: bool,
        /// With --history: a head pinned earlier, as a mail's
        /// X-Haltwatch-History-Head (`N 0xHASH`) or its hash alone; fails
        /// unless the ledger still holds that record.
        #[arg(long, requires = "history")]
        head: Option<String>,
        /// With --history: read every anchor back from its chain and check
        /// the ledger still holds the head it carries.
        #[arg(long, requires = "history")]
        anchors: bool,
    },
    /// Print a config snippet for a contract, from its ABI: the preset or
    /// halt rules it recognises, a probe, questions where it cannot tell.
    Init {
        /// The chain's name in the config.
        #[arg(long)]
        chain: String,
        /// The contract's address.
        #[arg(long)]
        address: String,
        /// Its JSON ABI (or a Hardhat/Foundry artifact).
        #[arg(long)]
        abi: PathBuf,
        /// The protocol's name (default: the ABI file's name).
        #[arg(long)]
        protocol: Option<String>,
    },
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
    /// Export incidents for auditors: CSV (one row per incident), JSON or JSON lines.
    Export {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long, value_enum)]
        format: ExportFormat,
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

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    Jsonl,
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
            say_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            say_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The error that ends the process, on stderr if it can be written (on a
/// full disk it may not: the exit code still says it).
fn say_error(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {text}");
}

fn init_tracing(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // Our own INFO lines; libraries only when they warn (alloy's INFO
        // "Pubsub service request channel closed" is not news to anyone).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,haltwatch=info"));
    // The WebSocket client traces its whole handshake request: the URL's
    // path and query (an API key) and Basic auth from its user info, with no
    // scheme the redacting writer could know them by. Only its warnings,
    // whatever RUST_LOG says.
    if let Ok(quiet) = "tungstenite::handshake=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr redirected to a file on
        // a full disk) is dropped: by default the subscriber reports it
        // with eprintln!, which panics when stderr fails.
        .log_internal_errors(false)
        .with_writer(|| haltwatch::redact::Redacting(std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `haltwatch run` until SIGTERM (orchestrators: Kubernetes, systemd,
/// Docker) or SIGINT (Ctrl-C): the pipeline stops reading the chain, lands
/// what it holds and gives the outbox one pass, within the config's
/// `shutdown_timeout_seconds` (past it: exit code 1).
/// A second signal exits at once.
async fn run_until_signalled(config: config::Config, store: Store) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listening from the start: from here on SIGTERM no longer kills.
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let limit = config.shutdown_timeout;
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let run = pipeline::run(config, store, async {
        let _ = stopping.await;
    });
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
    let _ = stop.send(());
    tokio::select! {
        result = &mut run => result.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        _ = term.recv() => {
            tracing::warn!("second signal: exiting at once");
            Ok(ExitCode::from(130))
        }
        _ = int.recv() => {
            tracing::warn!("second signal: exiting at once");
            Ok(ExitCode::from(130))
        }
        _ = tokio::time::sleep(limit) => {
            tracing::error!(limit_seconds = limit.as_secs(), "shutdown did not finish in time; exiting");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => Ok(check_config(&cli.config)),
        Command::Run => {
            let config = config::load(&cli.config)?;
            // Held until `run` returns: one `run` per SQLite history.
            let _lock = config
                .store
                .sqlite_path()
                .map(RunLock::acquire)
                .transpose()?;
            let store = Store::open(&config.store).await?;
            tracing::info!(config = %cli.config.display(), chains = config.chains.len(),
                protocols = config.protocols.len(), "haltwatch running");
            run_until_signalled(config, store).await
        }
        Command::Incidents { command } => incidents(&cli.config, command).await,
        Command::Backfill {
            chain,
            from_block,
            to_block,
        } => {
            anyhow::ensure!(
                from_block <= to_block,
                "--from-block must not be after --to-block"
            );
            let config = config::load(&cli.config)?;
            let store = Store::open(&config.store).await?;
            let tty = std::io::stderr().is_terminal();
            let mut last_line = std::time::Instant::now();
            let done = pipeline::backfill(config, store, &chain, from_block, to_block, |p| {
                if tty {
                    eprint!("\r{}", progress_bar(p));
                } else if last_line.elapsed() >= std::time::Duration::from_secs(2) {
                    eprintln!("{}", progress_line(p));
                    last_line = std::time::Instant::now();
                }
            })
            .await?;
            if tty {
                eprintln!();
            }
            let share = 100.0 * done.node_wait.as_secs_f64() / done.elapsed.as_secs_f64().max(1e-9);
            println!(
                "backfilled blocks {from_block}..={to_block} of {chain}: {} blocks, {} logs in {:.2} s \
                 ({:.0} blocks/s; {share:.0}% of the time waiting on the node)",
                done.done_blocks,
                done.logs,
                done.elapsed.as_secs_f64(),
                done.blocks_per_second()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            since,
            until,
            protocol,
            format,
        } => commands::audit::report(&cli.config, &since, &until, protocol, format).await,
        Command::Verify {
            id,
            all,
            history,
            head,
            anchors,
        } => {
            if anchors {
                commands::audit::verify_anchors(&cli.config).await
            } else {
                commands::audit::verify(&cli.config, id, all, history, head.as_deref()).await
            }
        }
        Command::Init {
            chain,
            address,
            abi,
            protocol,
        } => {
            let address = config::parse_address(&address).map_err(anyhow::Error::msg)?;
            let parsed = config::read_abi(&abi).map_err(anyhow::Error::msg)?;
            let stem = abi
                .file_stem()
                .map_or("contract".to_string(), |s| s.to_string_lossy().into_owned());
            let protocol = protocol.unwrap_or_else(|| stem.clone());
            // Absolute: a config resolves relative paths against its own folder.
            let abi = std::fs::canonicalize(&abi).unwrap_or(abi);
            let s = haltwatch::init::snippet(&protocol, &chain, &stem, address, &abi, &parsed);
            print!("{}", s.text);
            Ok(ExitCode::SUCCESS)
        }
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
    let store = Store::open_read_only(&store_config).await?;
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
                ..Default::default()
            };
            let list = store.list(&filter).await?;
            match format {
                Format::Table => print!("{}", render::table(&list)),
                Format::Json => println!("{}", render::json(&list)),
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Export {
            since,
            until,
            protocol,
            format,
        } => {
            let now = now_secs();
            let time = |s: Option<String>| -> anyhow::Result<Option<u64>> {
                s.map(|s| {
                    parse_time(&s, now).with_context(|| {
                        format!("bad time `{s}`: expected RFC 3339 or a span like 30d")
                    })
                })
                .transpose()
            };
            let filter = IncidentFilter {
                protocol,
                since: time(since)?,
                until: time(until)?,
                ..Default::default()
            };
            // The head as of the export (read just before its rows).
            let head = store.ledger_head().await?;
            let mut list = store.list(&filter).await?;
            list.reverse(); // oldest first: the natural order of an export
            // On stderr, so the export itself stays plain CSV or JSON.
            eprintln!(
                "{}: pin it, then `haltwatch verify --history --head '{} {}'` shows whether this history was rewritten since",
                haltwatch::notify::history_head_line(head),
                head.0,
                head.1
            );
            match format {
                ExportFormat::Csv => print!("{}", haltwatch::report::csv(&list)),
                ExportFormat::Json => println!("{}", render::json(&list)),
                ExportFormat::Jsonl => {
                    for i in &list {
                        println!("{}", serde_json::to_string(i)?);
                    }
                }
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn progress_bar(p: &pipeline::BackfillProgress) -> String {
    let fraction = p.done_blocks as f64 / p.total_blocks.max(1) as f64;
    let filled = (fraction * 30.0).round() as usize;
    format!(
        "[{}{}] {:>5.1}% {}/{} blocks  {:.0} blocks/s  ETA {}   ",
        "#".repeat(filled),
        "-".repeat(30 - filled.min(30)),
        fraction * 100.0,
        p.done_blocks,
        p.total_blocks,
        p.blocks_per_second(),
        render::duration(p.eta().as_secs())
    )
}

fn progress_line(p: &pipeline::BackfillProgress) -> String {
    format!(
        "backfill: {}/{} blocks, {} logs, {:.0} blocks/s, ETA {}",
        p.done_blocks,
        p.total_blocks,
        p.logs,
        p.blocks_per_second(),
        render::duration(p.eta().as_secs())
    )
}
