//! The self-contained demo: a local anvil chain, a bundled OpenZeppelin
//! Pausable protocol, the real pipeline on an embedded default config, one
//! pause and one unpause, and the incident they make.
//!
//! [`Chain`] (deploy, send, wait) is also what the integration tests use to
//! drive anvil.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;

use crate::store::{IncidentFilter, IncidentRecord, IncidentState, Store};

/// The demo protocol: OpenZeppelin 5 Pausable + Ownable, compiled by `contracts/build.sh`.
pub const DEMO_PAUSABLE_BIN: &str = include_str!("../contracts/out/DemoPausable.bin");
/// The ABI the demo config points at.
pub const OZ_PAUSABLE_ABI: &str = include_str!("../abis/oz-pausable.json");
/// The embedded default config; `{rpc}`, `{address}` and `{store}` are filled in.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Where `scripts/setup.sh` installs anvil, relative to the project root.
pub const ANVIL_INSTALL_PATH: &str = ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "anvil not found (looked at $HALTWATCH_ANVIL, {ANVIL_INSTALL_PATH} and PATH); \
         install it with `scripts/setup.sh` (npm package @foundry-rs/anvil)"
    )]
    AnvilMissing,
    #[error("cannot start anvil at {path}")]
    AnvilStart {
        path: PathBuf,
        #[source]
        source: alloy::node_bindings::NodeError,
    },
    #[error("chain call {what} failed: {detail}")]
    Chain { what: &'static str, detail: String },
    #[error("transaction {tx} was not mined within {waited:?}")]
    NotMined { tx: B256, waited: Duration },
    #[error("demo files in {dir}")]
    Files {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("the incident did not reach state {want:?} within {waited:?}")]
    Timeout {
        want: IncidentState,
        waited: Duration,
    },
}

/// Finds the anvil binary: `$HALTWATCH_ANVIL`, the setup script's install
/// folder (from the working directory or this crate's source), then `PATH`.
pub fn find_anvil() -> Result<PathBuf, DemoError> {
    if let Some(p) = std::env::var_os("HALTWATCH_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        PathBuf::from(ANVIL_INSTALL_PATH),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(ANVIL_INSTALL_PATH),
    ];
    if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("anvil"))
        .find(|p| p.is_file())
        .ok_or(DemoError::AnvilMissing)
}

/// Starts anvil mining a block every `block_time_secs` (0 = automine).
pub fn spawn_anvil(block_time_secs: u64) -> Result<AnvilInstance, DemoError> {
    let path = find_anvil()?;
    // anvil writes the state of every block past its in-memory window to
    // ~/.foundry/anvil/tmp and leaves it there when killed: ~340 KB a
    // block, gigabytes for a benchmark. Old states stay in memory or go.
    let mut anvil = Anvil::at(&path).args(["--max-persisted-states", "0"]);
    if block_time_secs > 0 {
        anvil = anvil.args(["--block-time", &block_time_secs.to_string()]);
    }
    anvil
        .try_spawn()
        .map_err(|source| DemoError::AnvilStart { path, source })
}

fn chain_err(what: &'static str) -> impl FnOnce(alloy::transports::TransportError) -> DemoError {
    move |e| DemoError::Chain {
        what,
        detail: e.to_string(),
    }
}

/// A sender on a local chain: deploys contracts and sends calls with an
/// explicit gas limit (so reverting calls are mined too), waiting for receipts.
#[derive(Clone)]
pub struct Chain {
    pub provider: DynProvider,
    pub from: Address,
}

impl Chain {
    /// A sender with anvil's first key over HTTP.
    pub async fn connect(anvil: &AnvilInstance) -> Result<Self, DemoError> {
        let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
        let from = signer.address();
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .with_gas_estimation()
            .wallet(EthereumWallet::from(signer))
            .connect(&anvil.endpoint())
            .await
            .map_err(chain_err("connect"))?
            .erased();
        Ok(Chain { provider, from })
    }

    /// Deploys creation code given as hex; returns the contract address.
    pub async fn deploy(&self, bin_hex: &str) -> Result<Address, DemoError> {
        let code: Bytes = alloy::hex::decode(bin_hex.trim())
            .map_err(|e| DemoError::Chain {
                what: "decode bytecode",
                detail: e.to_string(),
            })?
            .into();
        let receipt = self
            .send(TransactionRequest::default().with_deploy_code(code))
            .await?;
        receipt.contract_address.ok_or(DemoError::Chain {
            what: "deploy",
            detail: "receipt has no contract address".into(),
        })
    }

    /// Calls `to` with `calldata` and waits (at most 30 s) for the receipt.
    pub async fn call(
        &self,
        to: Address,
        calldata: Vec<u8>,
    ) -> Result<TransactionReceipt, DemoError> {
        self.send(
            TransactionRequest::default()
                .with_to(to)
                .with_input(calldata)
                .with_gas_limit(1_000_000),
        )
        .await
    }

    pub async fn send(&self, tx: TransactionRequest) -> Result<TransactionReceipt, DemoError> {
        let pending = self
            .provider
            .send_transaction(tx.with_from(self.from))
            .await
            .map_err(chain_err("eth_sendTransaction"))?;
        let hash = *pending.tx_hash();
        let waited = Duration::from_secs(30);
        match tokio::time::timeout(waited, pending.get_receipt()).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(DemoError::Chain {
                what: "receipt",
                detail: e.to_string(),
            }),
            Err(_) => Err(DemoError::NotMined { tx: hash, waited }),
        }
    }
}

/// The 4-byte selector of a function signature, as calldata.
pub fn selector(signature: &str) -> Vec<u8> {
    alloy::primitives::keccak256(signature.as_bytes())[..4].to_vec()
}

/// Polls the store until an incident of `protocol` is in `want` state.
pub async fn wait_for_incident(
    store: &Store,
    protocol: &str,
    want: IncidentState,
    waited: Duration,
) -> Result<IncidentRecord, DemoError> {
    let filter = IncidentFilter {
        protocol: Some(protocol.to_string()),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + waited;
    loop {
        if let Some(i) = store
            .list(&filter)
            .await?
            .into_iter()
            .find(|i| i.state == want)
        {
            return Ok(i);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DemoError::Timeout { want, waited });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the demo; `say` receives progress lines. Returns the resolved incident.
pub async fn run(mut say: impl FnMut(&str)) -> Result<IncidentRecord, DemoError> {
    say("starting a local anvil chain (1 block per second)");
    let anvil = spawn_anvil(1)?;
    let chain = Chain::connect(&anvil).await?;
    let address = chain.deploy(DEMO_PAUSABLE_BIN).await?;
    say(&format!(
        "deployed the demo protocol (OpenZeppelin Pausable) at {address}"
    ));

    let dir = std::env::temp_dir().join(format!("haltwatch-demo-{}", std::process::id()));
    let files = |source| DemoError::Files {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("abis")).map_err(files)?;
    std::fs::write(dir.join("abis/oz-pausable.json"), OZ_PAUSABLE_ABI).map_err(files)?;
    let text = DEMO_CONFIG
        .replace("{rpc}", &anvil.ws_endpoint())
        .replace("{address}", &address.to_string());
    let config_path = dir.join("haltwatch.toml");
    std::fs::write(&config_path, &text).map_err(files)?;
    let config = crate::config::parse(&text, &config_path)?;
    let store = Store::open(&config.store).await?;
    say(&format!(
        "monitoring it with the embedded default config ({})",
        config_path.display()
    ));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline = tokio::spawn(crate::pipeline::run(config, store.clone(), async {
        let _ = stopped.await;
    }));
    // Let the monitor see the head before the pause, as a sidecar would be.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let outcome = async {
        let receipt = chain.call(address, selector("pause()")).await?;
        say(&format!(
            "paused it in block {} (tx {})",
            receipt.block_number.unwrap_or_default(),
            receipt.transaction_hash
        ));
        let open = wait_for_incident(
            &store,
            "Demo Vault",
            IncidentState::Open,
            Duration::from_secs(20),
        )
        .await?;
        say(&format!(
            "haltwatch opened incident {} ({})",
            open.id, open.severity
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let receipt = chain.call(address, selector("unpause()")).await?;
        say(&format!(
            "unpaused it in block {} (tx {})",
            receipt.block_number.unwrap_or_default(),
            receipt.transaction_hash
        ));
        wait_for_incident(
            &store,
            "Demo Vault",
            IncidentState::Resolved,
            Duration::from_secs(20),
        )
        .await
    }
    .await;

    let _ = stop.send(());
    let stopped = pipeline.await;
    let _ = std::fs::remove_dir_all(&dir);
    let incident = outcome?;
    match stopped {
        Ok(r) => r?,
        Err(e) => return Err(crate::pipeline::PipelineError::Panic(e).into()),
    }
    Ok(incident)
}
