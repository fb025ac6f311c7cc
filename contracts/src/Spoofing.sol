// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// A flash-loan-style OpenZeppelin 5 vault: anyone may call `flashLoan` with
/// a receiver of their choosing, and the receiver's revert bubbles up
/// unchanged through `Address.functionCall`, as in many real vaults.
contract FlashVault is Pausable, Ownable {
    constructor() Ownable(msg.sender) {}

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    function flashLoan(address receiver, bytes calldata data) external whenNotPaused {
        Address.functionCall(receiver, data);
    }
}

/// An attacker's flash-loan receiver: reverts the way a paused contract
/// does, so the monitored vault's transaction fails with a pause revert it
/// did not raise.
contract PauseSpoofer {
    error EnforcedPause();

    function spoofEnforcedPause() external pure {
        revert EnforcedPause();
    }

    function spoofPausableString() external pure {
        revert("Pausable: paused");
    }
}

/// An Aave flash-loan receiver that reverts with Aave's own "29"
/// (Errors.RESERVE_PAUSED). The pool passes the revert on, so anyone can
/// make the production pool fail a transaction with "29" while nothing
/// is paused.
contract AaveFlashSpoofer {
    function executeOperation(address, uint256, uint256, address, bytes calldata)
        external
        pure
        returns (bool)
    {
        revert("29");
    }
}
