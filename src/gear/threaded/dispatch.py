"""gear's packet dispatch: packet type -> ``handleXxx(packet)`` hook, and the default hooks.

Owns ``HANDLERS`` (gear's dispatch table, plus the types gear lacked) and ``PacketDispatch``, the
base of ``BaseClientServer``: ``handlePacket`` (with the ``reportTimingStats`` hook, paid for only
when overridden), one default ``handleXxx`` per packet type that logs the packet as unhandled,
``handleAdminRequest`` and ``handleDisconnect`` (docs/gear-compat.md §3.3). These hooks are the
dispatch points gear users override; ``Client`` and ``Worker`` override the ones they serve.

Names are gear's camelCase on purpose. Must not import the client, connection, worker or server
modules, nor ``gear.aio``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gear import constants
from gear.threaded.admin_requests import AdminRequest
from gear.threaded.packet import Packet

__all__ = ["HANDLERS", "PacketDispatch"]

#: Packet type -> name of the ``PacketDispatch`` method that handles it (gear's dispatch table,
#: plus the types gear lacked).
HANDLERS: dict[int, str] = {
    constants.JOB_CREATED: "handleJobCreated",
    constants.WORK_COMPLETE: "handleWorkComplete",
    constants.WORK_FAIL: "handleWorkFail",
    constants.WORK_EXCEPTION: "handleWorkException",
    constants.WORK_DATA: "handleWorkData",
    constants.WORK_WARNING: "handleWorkWarning",
    constants.WORK_STATUS: "handleWorkStatus",
    constants.STATUS_RES: "handleStatusRes",
    constants.STATUS_RES_UNIQUE: "handleStatusResUnique",
    constants.GET_STATUS: "handleGetStatus",
    constants.GET_STATUS_UNIQUE: "handleGetStatusUnique",
    constants.JOB_ASSIGN_UNIQ: "handleJobAssignUnique",
    constants.JOB_ASSIGN: "handleJobAssign",
    constants.JOB_ASSIGN_ALL: "handleJobAssignAll",
    constants.NO_JOB: "handleNoJob",
    constants.NOOP: "handleNoop",
    constants.SUBMIT_JOB: "handleSubmitJob",
    constants.SUBMIT_JOB_BG: "handleSubmitJobBg",
    constants.SUBMIT_JOB_HIGH: "handleSubmitJobHigh",
    constants.SUBMIT_JOB_HIGH_BG: "handleSubmitJobHighBg",
    constants.SUBMIT_JOB_LOW: "handleSubmitJobLow",
    constants.SUBMIT_JOB_LOW_BG: "handleSubmitJobLowBg",
    constants.SUBMIT_JOB_SCHED: "handleSubmitJobSched",
    constants.SUBMIT_JOB_EPOCH: "handleSubmitJobEpoch",
    constants.GRAB_JOB_UNIQ: "handleGrabJobUniq",
    constants.GRAB_JOB: "handleGrabJob",
    constants.GRAB_JOB_ALL: "handleGrabJobAll",
    constants.PRE_SLEEP: "handlePreSleep",
    constants.SET_CLIENT_ID: "handleSetClientID",
    constants.CAN_DO: "handleCanDo",
    constants.CAN_DO_TIMEOUT: "handleCanDoTimeout",
    constants.CANT_DO: "handleCantDo",
    constants.RESET_ABILITIES: "handleResetAbilities",
    constants.ECHO_REQ: "handleEchoReq",
    constants.ECHO_RES: "handleEchoRes",
    constants.ERROR: "handleError",
    constants.ALL_YOURS: "handleAllYours",
    constants.OPTION_REQ: "handleOptionReq",
    constants.OPTION_RES: "handleOptionRes",
    constants.JOB_CANCEL: "handleJobCancel",
}



class PacketDispatch:
    """Dispatch of received packets to ``handleXxx`` hooks; subclasses set ``self.log``."""

    log: logging.Logger

    def handlePacket(self, packet: Packet) -> Any:
        """Dispatch a received packet to its ``handleXxx`` method (by type)."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Received packet from %s: %s", packet.connection, packet)
        timed = type(self).reportTimingStats is not PacketDispatch.reportTimingStats
        start = time.perf_counter() if timed else 0.0
        name = HANDLERS.get(packet.ptype)
        if name is None:
            self.log.error("Received unknown packet: %s", packet)
            result = None
        else:
            result = getattr(self, name)(packet)
        if timed:  # only subclasses that override the hook pay for the clock
            self.reportTimingStats(packet.ptype, time.perf_counter() - start)
        return result

    def reportTimingStats(self, ptype: int, duration: float) -> None:
        """Hook: called with each packet type and its handling time (seconds)."""

    def _defaultPacketHandler(self, packet: Packet) -> Any:
        self.log.error("Received unhandled packet: %s", packet)
        return None

    def handleJobCreated(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkComplete(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkFail(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkException(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkData(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkWarning(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkStatus(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleStatusRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleStatusResUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGetStatus(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGetStatusUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssignUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssign(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssignAll(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleNoJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleNoop(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobHigh(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobHighBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobLow(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobLowBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobSched(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobEpoch(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJobUniq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJobAll(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handlePreSleep(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSetClientID(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCanDo(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCanDoTimeout(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCantDo(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleResetAbilities(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleEchoReq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleEchoRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleError(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleAllYours(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleOptionReq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleOptionRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobCancel(self, packet: Packet) -> Any:
        """geard's JOB_CANCEL (docs/protocol.md §1.7); the Worker overrides it."""
        return self._defaultPacketHandler(packet)

    def handleAdminRequest(self, request: AdminRequest) -> None:
        """Called with each completed admin reply; wakes whoever waits on it."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Received admin data %s", request)
        request.setComplete()

    def handleDisconnect(self, job: Any) -> Any:
        """Hook: called for each job whose connection was lost; returns the job."""
        return job

