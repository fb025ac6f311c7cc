// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A pool that can fail without telling anyone: `act()` reverts with a custom
/// error while `broken`, and `killMe()` halts it Curve-style, with no event.
contract FlakyPool {
    error Unavailable(uint256 code);

    bool public broken;
    bool public is_killed;
    uint256 public calls;

    function setBroken(bool b) external { broken = b; }
    function killMe() external { is_killed = true; }
    function unkillMe() external { is_killed = false; }

    function act() external {
        if (broken) revert Unavailable(42);
        calls += 1;
    }

    function legacy() external view {
        require(!broken, "Pausable: paused");
    }
}

/// A router whose calls into a pool fail inside a successful transaction:
/// only a call tracer sees them.
contract Router {
    uint256 public failures;

    function route(address target, bytes calldata data) external {
        (bool ok, ) = target.call(data);
        if (!ok) failures += 1;
    }
}
