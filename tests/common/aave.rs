//! The production Aave V3 market (`@aave/core-v3@1.19.3`, installed by
//! `scripts/setup.sh` under `.tools/aave`) deployed on anvil from the
//! package's own Hardhat artifacts: libraries linked, the addresses
//! provider, the ACL manager with the three admin roles, the Pool and the
//! PoolConfigurator behind their proxies, and reserves on the package's
//! MintableERC20 with its AToken, debt tokens and rate strategy.

use std::collections::HashMap;
use std::path::PathBuf;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolValue};
use haltwatch::demo::Chain;

sol! {
    interface IAddressesProvider {
        function setACLAdmin(address newAclAdmin) external;
        function setACLManager(address newAclManager) external;
        function setPoolImpl(address newPoolImpl) external;
        function setPoolConfiguratorImpl(address newPoolConfiguratorImpl) external;
        function setPoolDataProvider(address newDataProvider) external;
        function getPool() external view returns (address);
        function getPoolConfigurator() external view returns (address);
    }
    interface IAclManager {
        function addPoolAdmin(address admin) external;
        function addEmergencyAdmin(address admin) external;
        function addRiskAdmin(address admin) external;
    }
    struct InitReserveInput {
        address aTokenImpl;
        address stableDebtTokenImpl;
        address variableDebtTokenImpl;
        uint8 underlyingAssetDecimals;
        address interestRateStrategyAddress;
        address underlyingAsset;
        address treasury;
        address incentivesController;
        string aTokenName;
        string aTokenSymbol;
        string variableDebtTokenName;
        string variableDebtTokenSymbol;
        string stableDebtTokenName;
        string stableDebtTokenSymbol;
        bytes params;
    }
    interface IPoolConfigurator {
        function initReserves(InitReserveInput[] input) external;
        function setPoolPause(bool paused) external;
        function setReservePause(address asset, bool paused) external;
        function setReserveFreeze(address asset, bool freeze) external;
        function setReserveActive(address asset, bool active) external;
        function dropReserve(address asset) external;
        function setReserveFlashLoaning(address asset, bool enabled) external;
    }
    interface IPool {
        function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
        function flashLoanSimple(address receiverAddress, address asset, uint256 amount, bytes params, uint16 referralCode) external;
        function getReservesList() external view returns (address[]);
    }
    interface IMintableErc20 {
        function mint(address account, uint256 value) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// Where the package's artifacts are; fails with the install command when missing.
pub fn artifacts() -> PathBuf {
    let dir = super::root().join(".tools/aave/node_modules/@aave/core-v3/artifacts/contracts");
    assert!(
        dir.is_dir(),
        "the Aave V3 artifacts are missing at {}: run scripts/setup.sh \
         (it installs @aave/core-v3@1.19.3 into .tools/aave)",
        dir.display()
    );
    dir
}

/// The path of the artifact of contract `name` (found by file name).
pub fn artifact_path(name: &str) -> PathBuf {
    fn find(dir: &std::path::Path, file: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = find(&path, file) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|f| f == file) {
                return Some(path);
            }
        }
        None
    }
    let root = artifacts();
    find(&root, &format!("{name}.json"))
        .unwrap_or_else(|| panic!("no artifact {name}.json under {}", root.display()))
}

/// Creation code of `name` with its libraries linked at `libraries`' addresses.
pub fn linked_bytecode(name: &str, libraries: &HashMap<String, Address>) -> String {
    let path = artifact_path(name);
    let text = std::fs::read_to_string(&path).expect("read artifact");
    let artifact: serde_json::Value = serde_json::from_str(&text).expect("artifact is JSON");
    let mut code = artifact["bytecode"]
        .as_str()
        .expect("artifact has bytecode")
        .trim_start_matches("0x")
        .to_string();
    let links = artifact["linkReferences"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for libs in links.values() {
        for (lib, places) in libs.as_object().expect("link references") {
            let address = libraries
                .get(lib)
                .unwrap_or_else(|| panic!("{name} links {lib}, which is not deployed yet"));
            let hex = alloy::hex::encode(address);
            for place in places.as_array().expect("link places") {
                let start = place["start"].as_u64().expect("start") as usize * 2;
                code.replace_range(start..start + 40, &hex);
            }
        }
    }
    assert!(!code.contains("__$"), "{name}: unlinked library left");
    code
}

/// A deployed market.
pub struct AaveMarket {
    pub provider: Address,
    pub acl: Address,
    pub pool: Address,
    pub configurator: Address,
    /// The reserves' underlying tokens, in listing order.
    pub assets: Vec<Address>,
    /// Kept to list more reserves.
    a_token_impl: Address,
    stable_impl: Address,
    variable_impl: Address,
    strategy: Address,
}

/// Sends `calldata` to `to` with room for Aave's heavier calls; panics with
/// what failed when the call reverts.
pub async fn send(chain: &Chain, to: Address, calldata: Vec<u8>, what: &str) -> TransactionReceipt {
    let r = chain
        .send(
            TransactionRequest::default()
                .with_to(to)
                .with_input(calldata)
                .with_gas_limit(15_000_000),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(r.status(), "{what} reverted (tx {})", r.transaction_hash);
    r
}

/// Sends a call expected to revert, mined with a fixed gas limit.
pub async fn send_failing(chain: &Chain, to: Address, calldata: Vec<u8>) -> TransactionReceipt {
    let r = chain.call(to, calldata).await.expect("mined");
    assert!(!r.status(), "expected a revert");
    r
}

async fn deploy(
    chain: &Chain,
    name: &str,
    libs: &HashMap<String, Address>,
    args: Vec<u8>,
) -> Address {
    let code = linked_bytecode(name, libs) + &alloy::hex::encode(args);
    chain
        .deploy(&code)
        .await
        .unwrap_or_else(|e| panic!("deploy {name}: {e}"))
}

async fn view(chain: &Chain, to: Address, calldata: Vec<u8>) -> Bytes {
    use alloy::providers::Provider;
    chain
        .provider
        .call(
            TransactionRequest::default()
                .with_to(to)
                .with_input(calldata),
        )
        .await
        .expect("eth_call")
}

impl AaveMarket {
    /// Deploys the market with `reserves` reserves (`TKA`, `TKB`, …).
    pub async fn deploy(chain: &Chain, reserves: usize) -> AaveMarket {
        let none = HashMap::new();
        let me = chain.from;
        let provider = deploy(
            chain,
            "PoolAddressesProvider",
            &none,
            ("haltwatch test market".to_string(), me).abi_encode_params(),
        )
        .await;
        send(
            chain,
            provider,
            IAddressesProvider::setACLAdminCall { newAclAdmin: me }.abi_encode(),
            "setACLAdmin",
        )
        .await;
        let acl = deploy(chain, "ACLManager", &none, (provider,).abi_encode_params()).await;
        send(
            chain,
            provider,
            IAddressesProvider::setACLManagerCall { newAclManager: acl }.abi_encode(),
            "setACLManager",
        )
        .await;
        send(
            chain,
            acl,
            IAclManager::addPoolAdminCall { admin: me }.abi_encode(),
            "addPoolAdmin",
        )
        .await;
        send(
            chain,
            acl,
            IAclManager::addEmergencyAdminCall { admin: me }.abi_encode(),
            "addEmergencyAdmin",
        )
        .await;
        send(
            chain,
            acl,
            IAclManager::addRiskAdminCall { admin: me }.abi_encode(),
            "addRiskAdmin",
        )
        .await;

        // The logic libraries; FlashLoanLogic links BorrowLogic.
        let mut libs = HashMap::new();
        for lib in [
            "BorrowLogic",
            "BridgeLogic",
            "EModeLogic",
            "LiquidationLogic",
            "PoolLogic",
            "SupplyLogic",
            "ConfiguratorLogic",
        ] {
            let a = deploy(chain, lib, &none, Vec::new()).await;
            libs.insert(lib.to_string(), a);
        }
        let flash = deploy(chain, "FlashLoanLogic", &libs, Vec::new()).await;
        libs.insert("FlashLoanLogic".into(), flash);

        let pool_impl = deploy(chain, "Pool", &libs, (provider,).abi_encode_params()).await;
        send(
            chain,
            provider,
            IAddressesProvider::setPoolImplCall {
                newPoolImpl: pool_impl,
            }
            .abi_encode(),
            "setPoolImpl",
        )
        .await;
        let configurator_impl = deploy(chain, "PoolConfigurator", &libs, Vec::new()).await;
        send(
            chain,
            provider,
            IAddressesProvider::setPoolConfiguratorImplCall {
                newPoolConfiguratorImpl: configurator_impl,
            }
            .abi_encode(),
            "setPoolConfiguratorImpl",
        )
        .await;
        let pool = Address::abi_decode(
            &view(
                chain,
                provider,
                IAddressesProvider::getPoolCall {}.abi_encode(),
            )
            .await,
        )
        .expect("getPool");
        let configurator = Address::abi_decode(
            &view(
                chain,
                provider,
                IAddressesProvider::getPoolConfiguratorCall {}.abi_encode(),
            )
            .await,
        )
        .expect("getPoolConfigurator");

        // The configurator asks it whether a reserve has suppliers (before
        // deactivating or dropping one).
        let data_provider = deploy(
            chain,
            "AaveProtocolDataProvider",
            &none,
            (provider,).abi_encode_params(),
        )
        .await;
        send(
            chain,
            provider,
            IAddressesProvider::setPoolDataProviderCall {
                newDataProvider: data_provider,
            }
            .abi_encode(),
            "setPoolDataProvider",
        )
        .await;

        let a_token_impl = deploy(chain, "AToken", &none, (pool,).abi_encode_params()).await;
        let stable_impl =
            deploy(chain, "StableDebtToken", &none, (pool,).abi_encode_params()).await;
        let variable_impl = deploy(
            chain,
            "VariableDebtToken",
            &none,
            (pool,).abi_encode_params(),
        )
        .await;
        let ray = |percent: u64| U256::from(percent) * U256::from(10u64).pow(U256::from(25));
        let strategy = deploy(
            chain,
            "DefaultReserveInterestRateStrategy",
            &none,
            (
                provider,
                ray(80),
                U256::ZERO,
                ray(4),
                ray(60),
                ray(2),
                ray(60),
                ray(2),
                ray(5),
                ray(20),
            )
                .abi_encode_params(),
        )
        .await;
        let mut market = AaveMarket {
            provider,
            acl,
            pool,
            configurator,
            assets: Vec::new(),
            a_token_impl,
            stable_impl,
            variable_impl,
            strategy,
        };
        for _ in 0..reserves {
            market.list_reserve(chain).await;
        }
        market
    }

    /// Deploys one more MintableERC20 and lists it as a reserve.
    pub async fn list_reserve(&mut self, chain: &Chain) -> Address {
        let n = self.assets.len();
        let symbol = format!("TK{}", (b'A' + n as u8) as char);
        let token = deploy(
            chain,
            "MintableERC20",
            &HashMap::new(),
            (format!("Token {symbol}"), symbol.clone(), U256::from(18u8)).abi_encode_params(),
        )
        .await;
        let input = InitReserveInput {
            aTokenImpl: self.a_token_impl,
            stableDebtTokenImpl: self.stable_impl,
            variableDebtTokenImpl: self.variable_impl,
            underlyingAssetDecimals: 18,
            interestRateStrategyAddress: self.strategy,
            underlyingAsset: token,
            treasury: chain.from,
            incentivesController: Address::ZERO,
            aTokenName: format!("Aave {symbol}"),
            aTokenSymbol: format!("a{symbol}"),
            variableDebtTokenName: format!("Variable debt {symbol}"),
            variableDebtTokenSymbol: format!("vd{symbol}"),
            stableDebtTokenName: format!("Stable debt {symbol}"),
            stableDebtTokenSymbol: format!("sd{symbol}"),
            params: Bytes::new(),
        };
        let call = IPoolConfigurator::initReservesCall { input: vec![input] };
        send(chain, self.configurator, call.abi_encode(), "initReserves").await;
        self.assets.push(token);
        token
    }

    /// The pool's reserve list, as the chain says.
    pub async fn reserves(&self, chain: &Chain) -> Vec<Address> {
        let out = view(chain, self.pool, IPool::getReservesListCall {}.abi_encode()).await;
        <Vec<Address>>::abi_decode(&out).expect("getReservesList")
    }

    pub async fn set_pool_pause(&self, chain: &Chain, paused: bool) -> TransactionReceipt {
        let call = IPoolConfigurator::setPoolPauseCall { paused };
        send(chain, self.configurator, call.abi_encode(), "setPoolPause").await
    }

    pub async fn set_reserve_pause(
        &self,
        chain: &Chain,
        asset: Address,
        paused: bool,
    ) -> TransactionReceipt {
        let call = IPoolConfigurator::setReservePauseCall { asset, paused };
        send(
            chain,
            self.configurator,
            call.abi_encode(),
            "setReservePause",
        )
        .await
    }

    pub async fn set_reserve_freeze(
        &self,
        chain: &Chain,
        asset: Address,
        freeze: bool,
    ) -> TransactionReceipt {
        let call = IPoolConfigurator::setReserveFreezeCall { asset, freeze };
        send(
            chain,
            self.configurator,
            call.abi_encode(),
            "setReserveFreeze",
        )
        .await
    }

    pub async fn drop_reserve(&self, chain: &Chain, asset: Address) -> TransactionReceipt {
        let call = IPoolConfigurator::dropReserveCall { asset };
        send(chain, self.configurator, call.abi_encode(), "dropReserve").await
    }

    pub async fn set_reserve_active(
        &self,
        chain: &Chain,
        asset: Address,
        active: bool,
    ) -> TransactionReceipt {
        let call = IPoolConfigurator::setReserveActiveCall { asset, active };
        send(
            chain,
            self.configurator,
            call.abi_encode(),
            "setReserveActive",
        )
        .await
    }

    pub async fn enable_flash_loans(&self, chain: &Chain, asset: Address) {
        let call = IPoolConfigurator::setReserveFlashLoaningCall {
            asset,
            enabled: true,
        };
        send(
            chain,
            self.configurator,
            call.abi_encode(),
            "setReserveFlashLoaning",
        )
        .await;
    }

    /// The calldata of a flash loan of `amount` of `asset` to `receiver`.
    pub fn flash_loan_call(&self, receiver: Address, asset: Address, amount: U256) -> Vec<u8> {
        IPool::flashLoanSimpleCall {
            receiverAddress: receiver,
            asset,
            amount,
            params: Bytes::new(),
            referralCode: 0,
        }
        .abi_encode()
    }

    /// Mints `amount` of `asset` to the sender and approves the pool for it.
    pub async fn fund(&self, chain: &Chain, asset: Address, amount: U256) {
        let mint = IMintableErc20::mintCall {
            account: chain.from,
            value: amount,
        };
        send(chain, asset, mint.abi_encode(), "mint").await;
        let approve = IMintableErc20::approveCall {
            spender: self.pool,
            amount,
        };
        send(chain, asset, approve.abi_encode(), "approve").await;
    }

    /// The calldata of a supply of `amount` of `asset` by the sender.
    pub fn supply_call(&self, chain: &Chain, asset: Address, amount: U256) -> Vec<u8> {
        IPool::supplyCall {
            asset,
            amount,
            onBehalfOf: chain.from,
            referralCode: 0,
        }
        .abi_encode()
    }
}
