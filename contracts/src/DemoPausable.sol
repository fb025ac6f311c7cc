// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// A minimal OpenZeppelin 5 pausable vault: the demo protocol and the
/// Pausable case of the tests. `deposit` reverts with `EnforcedPause()`
/// while paused, like every `whenNotPaused` function of a real protocol.
contract DemoPausable is Pausable, Ownable {
    mapping(address => uint256) public balances;

    constructor() Ownable(msg.sender) {}

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    function deposit() external payable whenNotPaused {
        balances[msg.sender] += msg.value;
    }
}
