// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Stand-ins for the pause machinery of real protocols. Each event is declared
// exactly as the real contract declares it, so the ABIs in `abis/` decode
// these logs the same way they decode mainnet logs.

/// Circle FiatToken (USDC): Pause() / Unpause().
contract FiatTokenMock {
    event Pause();
    event Unpause();

    function pause() external { emit Pause(); }
    function unpause() external { emit Unpause(); }
}

/// Compound v2 Comptroller: both ActionPaused overloads, and its market list.
contract ComptrollerMock {
    event ActionPaused(string action, bool pauseState);
    event ActionPaused(address cToken, string action, bool pauseState);
    event MarketListed(address cToken);

    address[] internal markets;

    function _supportMarket(address cToken) external {
        markets.push(cToken);
        emit MarketListed(cToken);
    }

    function getAllMarkets() external view returns (address[] memory) {
        return markets;
    }

    function setGlobalPaused(string calldata action, bool state) external {
        emit ActionPaused(action, state);
    }

    function setMarketPaused(address cToken, string calldata action, bool state) external {
        emit ActionPaused(cToken, action, state);
    }
}

/// Compound v3 Comet: PauseAction with one flag per action.
contract CometMock {
    event PauseAction(bool supplyPaused, bool transferPaused, bool withdrawPaused, bool absorbPaused, bool buyPaused);

    function pause(bool supply, bool transfer, bool withdraw, bool absorb, bool buy) external {
        emit PauseAction(supply, transfer, withdraw, absorb, buy);
    }
}

/// Lido stETH: Stopped/Resumed and StakingPaused/StakingResumed.
contract LidoMock {
    event Stopped();
    event Resumed();
    event StakingPaused();
    event StakingResumed();

    function stop() external { emit Stopped(); emit StakingPaused(); }
    function resume() external { emit Resumed(); emit StakingResumed(); }
    function pauseStaking() external { emit StakingPaused(); }
    function resumeStaking() external { emit StakingResumed(); }
}

/// Maker End: Cage() and Cage(bytes32 indexed ilk).
contract EndMock {
    event Cage();
    event Cage(bytes32 indexed ilk);

    function cage() external { emit Cage(); }
    function cageIlk(bytes32 ilk) external { emit Cage(ilk); }
}

/// Emits arbitrary logs: malformed data under a monitored topic, hostile strings.
contract RawEmitter {
    function emitRaw(bytes32[] calldata topics, bytes calldata data) external {
        bytes memory d = data;
        uint256 n = topics.length;
        assembly {
            let p := add(d, 32)
            let len := mload(d)
            switch n
            case 0 { log0(p, len) }
            case 1 { log1(p, len, calldataload(topics.offset)) }
            case 2 { log2(p, len, calldataload(topics.offset), calldataload(add(topics.offset, 32))) }
            default {
                log3(p, len, calldataload(topics.offset), calldataload(add(topics.offset, 32)), calldataload(add(topics.offset, 64)))
            }
        }
    }
}
