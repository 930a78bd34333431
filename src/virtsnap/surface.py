"""libvirt 9.0's surface, generated: every VIR_* constant, class and method with its signature.

Written by scripts/gen_libvirt_surface.py from libvirt-api.xml and python3-libvirt's libvirt.py; do not edit.
A method that virtsnap does not implement raises libvirt's VIR_ERR_NO_SUPPORT error naming the C function.
"""

# ruff: noqa: E501, N802, N803, N801
from __future__ import annotations

from .dispatch import not_supported

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

LIBVIR_VERSION_NUMBER = 9000000


class virDomain:
    """libvirt.virDomain's methods; the unimplemented ones raise."""

    def connect(self) -> Any:
        raise not_supported('virDomainConnect', 0)

    def c_pointer(self) -> Any:
        raise not_supported('virDomain_pointer', 0)

    def ID(self) -> Any:
        raise not_supported('virDomainGetID', 20)

    def OSType(self) -> Any:
        raise not_supported('virDomainGetOSType', 20)

    def UUID(self) -> Any:
        raise not_supported('virDomainGetUUID', 20)

    def UUIDString(self) -> Any:
        raise not_supported('virDomainGetUUIDString', 20)

    def XMLDesc(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetXMLDesc', 20)

    def abortJob(self) -> Any:
        raise not_supported('virDomainAbortJob', 20)

    def abortJobFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainAbortJobFlags', 20)

    def addIOThread(self, iothread_id: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainAddIOThread', 20)

    def agentSetResponseTimeout(self, timeout: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainAgentSetResponseTimeout', 20)

    def attachDevice(self, xml: Any) -> Any:
        raise not_supported('virDomainAttachDevice', 20)

    def attachDeviceFlags(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainAttachDeviceFlags', 20)

    def authorizedSSHKeysGet(self, user: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainAuthorizedSSHKeysGet', 20)

    def authorizedSSHKeysSet(self, user: Any, keys: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainAuthorizedSSHKeysSet', 20)

    def autostart(self) -> Any:
        raise not_supported('virDomainGetAutostart', 20)

    def backupBegin(self, backupXML: Any, checkpointXML: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBackupBegin', 20)

    def backupGetXMLDesc(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainBackupGetXMLDesc', 20)

    def blkioParameters(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetBlkioParameters', 20)

    def blockCommit(self, disk: Any, base: Any, top: Any, bandwidth: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockCommit', 20)

    def blockCopy(self, disk: Any, destxml: Any, params: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockCopy', 20)

    def blockInfo(self, path: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetBlockInfo', 20)

    def blockIoTune(self, disk: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetBlockIoTune', 20)

    def blockJobAbort(self, disk: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockJobAbort', 20)

    def blockJobInfo(self, path: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetBlockJobInfo', 20)

    def blockJobSetSpeed(self, disk: Any, bandwidth: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockJobSetSpeed', 20)

    def blockPeek(self, disk: Any, offset: Any, size: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockPeek', 20)

    def blockPull(self, disk: Any, bandwidth: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockPull', 20)

    def blockRebase(self, disk: Any, base: Any, bandwidth: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockRebase', 20)

    def blockResize(self, disk: Any, size: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockResize', 20)

    def blockStats(self, path: Any) -> Any:
        raise not_supported('virDomainBlockStats', 20)

    def blockStatsFlags(self, path: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainBlockStatsFlags', 20)

    def checkpointCreateXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCheckpointCreateXML', 69)

    def checkpointLookupByName(self, name: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCheckpointLookupByName', 69)

    def controlInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetControlInfo', 20)

    def coreDump(self, to: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCoreDump', 20)

    def coreDumpWithFormat(self, to: Any, dumpformat: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCoreDumpWithFormat', 20)

    def create(self) -> Any:
        raise not_supported('virDomainCreate', 20)

    def createWithFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainCreateWithFlags', 20)

    def delIOThread(self, iothread_id: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainDelIOThread', 20)

    def destroy(self) -> Any:
        raise not_supported('virDomainDestroy', 20)

    def destroyFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainDestroyFlags', 20)

    def detachDevice(self, xml: Any) -> Any:
        raise not_supported('virDomainDetachDevice', 20)

    def detachDeviceAlias(self, alias: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainDetachDeviceAlias', 20)

    def detachDeviceFlags(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainDetachDeviceFlags', 20)

    def diskErrors(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetDiskErrors', 20)

    def emulatorPinInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetEmulatorPinInfo', 20)

    def fSTrim(self, mountPoint: Any, minimum: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainFSTrim', 20)

    def fsInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetFSInfo', 20)

    def getCPUStats(self, total: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetCPUStats', 20)

    def guestInfo(self, types: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetGuestInfo', 20)

    def guestVcpus(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetGuestVcpus', 20)

    def hasCurrentSnapshot(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainHasCurrentSnapshot', 35)

    def hasManagedSaveImage(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainHasManagedSaveImage', 20)

    def hostname(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetHostname', 20)

    def info(self) -> Any:
        raise not_supported('virDomainGetInfo', 20)

    def injectNMI(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainInjectNMI', 20)

    def interfaceAddresses(self, source: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainInterfaceAddresses', 20)

    def interfaceParameters(self, device: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetInterfaceParameters', 20)

    def interfaceStats(self, path: Any) -> Any:
        raise not_supported('virDomainInterfaceStats', 20)

    def ioThreadInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetIOThreadInfo', 20)

    def isActive(self) -> Any:
        raise not_supported('virDomainIsActive', 20)

    def isPersistent(self) -> Any:
        raise not_supported('virDomainIsPersistent', 20)

    def isUpdated(self) -> Any:
        raise not_supported('virDomainIsUpdated', 20)

    def jobInfo(self) -> Any:
        raise not_supported('virDomainGetJobInfo', 20)

    def jobStats(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetJobStats', 20)

    def launchSecurityInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetLaunchSecurityInfo', 20)

    def managedSave(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainManagedSave', 20)

    def managedSaveDefineXML(self, dxml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainManagedSaveDefineXML', 20)

    def managedSaveGetXMLDesc(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainManagedSaveGetXMLDesc', 20)

    def managedSaveRemove(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainManagedSaveRemove', 20)

    def maxMemory(self) -> Any:
        raise not_supported('virDomainGetMaxMemory', 20)

    def maxVcpus(self) -> Any:
        raise not_supported('virDomainGetMaxVcpus', 20)

    def memoryParameters(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetMemoryParameters', 20)

    def memoryPeek(self, start: Any, size: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMemoryPeek', 20)

    def memoryStats(self) -> Any:
        raise not_supported('virDomainMemoryStats', 20)

    def messages(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetMessages', 20)

    def metadata(self, type: Any, uri: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetMetadata', 20)

    def migrate(self, dconn: Any, flags: Any = 0, dname: Any = None, uri: Any = None, bandwidth: Any = 0) -> Any:
        raise not_supported('virDomainMigrate', 20)

    def migrate2(self, dconn: Any, dxml: Any = None, flags: Any = 0, dname: Any = None, uri: Any = None, bandwidth: Any = 0) -> Any:
        raise not_supported('virDomainMigrate2', 20)

    def migrate3(self, dconn: Any, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrate3', 20)

    def migrateGetCompressionCache(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateGetCompressionCache', 20)

    def migrateGetMaxDowntime(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateGetMaxDowntime', 20)

    def migrateGetMaxSpeed(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateGetMaxSpeed', 20)

    def migrateSetCompressionCache(self, cacheSize: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateSetCompressionCache', 20)

    def migrateSetMaxDowntime(self, downtime: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateSetMaxDowntime', 20)

    def migrateSetMaxSpeed(self, bandwidth: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateSetMaxSpeed', 20)

    def migrateStartPostCopy(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateStartPostCopy', 20)

    def migrateToURI(self, duri: Any, flags: Any = 0, dname: Any = None, bandwidth: Any = 0) -> Any:
        raise not_supported('virDomainMigrateToURI', 20)

    def migrateToURI2(self, dconnuri: Any = None, miguri: Any = None, dxml: Any = None, flags: Any = 0, dname: Any = None, bandwidth: Any = 0) -> Any:
        raise not_supported('virDomainMigrateToURI2', 20)

    def migrateToURI3(self, dconnuri: Any, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainMigrateToURI3', 20)

    def name(self) -> Any:
        raise not_supported('virDomainGetName', 20)

    def numaParameters(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetNumaParameters', 20)

    def openChannel(self, name: Any, st: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainOpenChannel', 20)

    def openConsole(self, dev_name: Any, st: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainOpenConsole', 20)

    def openGraphics(self, idx: Any, fd: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainOpenGraphics', 20)

    def openGraphicsFD(self, idx: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainOpenGraphicsFD', 20)

    def pMSuspendForDuration(self, target: Any, duration: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainPMSuspendForDuration', 20)

    def pMWakeup(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainPMWakeup', 20)

    def perfEvents(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetPerfEvents', 20)

    def pinEmulator(self, cpumap: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainPinEmulator', 20)

    def pinIOThread(self, iothread_val: Any, cpumap: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainPinIOThread', 20)

    def pinVcpu(self, vcpu: Any, cpumap: Any) -> Any:
        raise not_supported('virDomainPinVcpu', 20)

    def pinVcpuFlags(self, vcpu: Any, cpumap: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainPinVcpuFlags', 20)

    def reboot(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainReboot', 20)

    def rename(self, new_name: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainRename', 20)

    def reset(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainReset', 20)

    def resume(self) -> Any:
        raise not_supported('virDomainResume', 20)

    def revertToSnapshot(self, snap: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainRevertToSnapshot', 35)

    def save(self, to: Any) -> Any:
        raise not_supported('virDomainSave', 20)

    def saveFlags(self, to: Any, dxml: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainSaveFlags', 20)

    def saveParams(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSaveParams', 20)

    def schedulerParameters(self) -> Any:
        raise not_supported('virDomainGetSchedulerParameters', 20)

    def schedulerParametersFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetSchedulerParametersFlags', 20)

    def schedulerType(self) -> Any:
        raise not_supported('virDomainGetSchedulerType', 20)

    def screenshot(self, stream: Any, screen: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainScreenshot', 20)

    def securityLabel(self) -> Any:
        raise not_supported('virDomainGetSecurityLabel', 20)

    def securityLabelList(self) -> Any:
        raise not_supported('virDomainGetSecurityLabelList', 20)

    def sendKey(self, codeset: Any, holdtime: Any, keycodes: Any, nkeycodes: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSendKey', 20)

    def sendProcessSignal(self, pid_value: Any, signum: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSendProcessSignal', 20)

    def setAutostart(self, autostart: Any) -> Any:
        raise not_supported('virDomainSetAutostart', 20)

    def setBlkioParameters(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetBlkioParameters', 20)

    def setBlockIoTune(self, disk: Any, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetBlockIoTune', 20)

    def setBlockThreshold(self, dev: Any, threshold: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetBlockThreshold', 20)

    def setGuestVcpus(self, cpumap: Any, state: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetGuestVcpus', 20)

    def setIOThreadParams(self, iothread_val: Any, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetIOThreadParams', 20)

    def setInterfaceParameters(self, device: Any, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetInterfaceParameters', 20)

    def setLaunchSecurityState(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetLaunchSecurityState', 20)

    def setLifecycleAction(self, type: Any, action: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetLifecycleAction', 20)

    def setMaxMemory(self, memory: Any) -> Any:
        raise not_supported('virDomainSetMaxMemory', 20)

    def setMemory(self, memory: Any) -> Any:
        raise not_supported('virDomainSetMemory', 20)

    def setMemoryFlags(self, memory: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetMemoryFlags', 20)

    def setMemoryParameters(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetMemoryParameters', 20)

    def setMemoryStatsPeriod(self, period: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetMemoryStatsPeriod', 20)

    def setMetadata(self, type: Any, metadata: Any, key: Any, uri: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetMetadata', 20)

    def setNumaParameters(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetNumaParameters', 20)

    def setPerfEvents(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetPerfEvents', 20)

    def setSchedulerParameters(self, params: Any) -> Any:
        raise not_supported('virDomainSetSchedulerParameters', 20)

    def setSchedulerParametersFlags(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetSchedulerParametersFlags', 20)

    def setUserPassword(self, user: Any, password: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetUserPassword', 20)

    def setVcpu(self, vcpumap: Any, state: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetVcpu', 20)

    def setVcpus(self, nvcpus: Any) -> Any:
        raise not_supported('virDomainSetVcpus', 20)

    def setVcpusFlags(self, nvcpus: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetVcpusFlags', 20)

    def shutdown(self) -> Any:
        raise not_supported('virDomainShutdown', 20)

    def shutdownFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainShutdownFlags', 20)

    def snapshotCreateXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotCreateXML', 35)

    def snapshotCurrent(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotCurrent', 35)

    def snapshotListNames(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotListNames', 35)

    def snapshotLookupByName(self, name: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotLookupByName', 35)

    def snapshotNum(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotNum', 35)

    def startDirtyRateCalc(self, seconds: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainStartDirtyRateCalc', 20)

    def state(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetState', 20)

    def suspend(self) -> Any:
        raise not_supported('virDomainSuspend', 20)

    def undefine(self) -> Any:
        raise not_supported('virDomainUndefine', 20)

    def undefineFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainUndefineFlags', 20)

    def updateDeviceFlags(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainUpdateDeviceFlags', 20)

    def vcpuPinInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetVcpuPinInfo', 20)

    def vcpus(self) -> Any:
        raise not_supported('virDomainGetVcpus', 20)

    def vcpusFlags(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetVcpusFlags', 20)

    def listAllSnapshots(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainListAllSnapshots', 35)

    def listAllCheckpoints(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainListAllCheckpoints', 69)

    def createWithFiles(self, files: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCreateWithFiles', 20)

    def fsFreeze(self, mountpoints: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainFSFreeze', 20)

    def fsThaw(self, mountpoints: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainFSThaw', 20)

    def getTime(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainGetTime', 20)

    def setTime(self, time: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainSetTime', 20)

    def FDAssociate(self, name: Any, files: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainFDAssociate', 20)


class virConnect:
    """libvirt.virConnect's methods; the unimplemented ones raise."""

    def c_pointer(self) -> Any:
        raise not_supported('virConnect_pointer', 0)

    def allocPages(self, pages: Any, startCell: Any = 0, cellCount: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virNodeAllocPages', 20)

    def baselineCPU(self, xmlCPUs: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectBaselineCPU', 20)

    def baselineHypervisorCPU(self, emulator: Any, arch: Any, machine: Any, virttype: Any, xmlCPUs: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectBaselineHypervisorCPU', 20)

    def changeBegin(self, flags: Any = 0) -> Any:
        raise not_supported('virInterfaceChangeBegin', 26)

    def changeCommit(self, flags: Any = 0) -> Any:
        raise not_supported('virInterfaceChangeCommit', 26)

    def changeRollback(self, flags: Any = 0) -> Any:
        raise not_supported('virInterfaceChangeRollback', 26)

    def close(self) -> Any:
        raise not_supported('virConnectClose', 20)

    def compareCPU(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectCompareCPU', 20)

    def compareHypervisorCPU(self, emulator: Any, arch: Any, machine: Any, virttype: Any, xmlCPU: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectCompareHypervisorCPU', 20)

    def createLinux(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCreateLinux', 20)

    def createXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCreateXML', 20)

    def defineXML(self, xml: Any) -> Any:
        raise not_supported('virDomainDefineXML', 20)

    def defineXMLFlags(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainDefineXMLFlags', 20)

    def domainXMLFromNative(self, nativeFormat: Any, nativeConfig: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectDomainXMLFromNative', 20)

    def domainXMLToNative(self, nativeFormat: Any, domainXml: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectDomainXMLToNative', 20)

    def findStoragePoolSources(self, type: Any, srcSpec: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectFindStoragePoolSources', 18)

    def getCPUMap(self, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetCPUMap', 20)

    def getCPUModelNames(self, arch: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectGetCPUModelNames', 20)

    def getCPUStats(self, cpuNum: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetCPUStats', 20)

    def getCapabilities(self) -> Any:
        raise not_supported('virConnectGetCapabilities', 20)

    def getCellsFreeMemory(self, startCell: Any, maxCells: Any) -> Any:
        raise not_supported('virNodeGetCellsFreeMemory', 20)

    def getDomainCapabilities(self, emulatorbin: Any = None, arch: Any = None, machine: Any = None, virttype: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virConnectGetDomainCapabilities', 20)

    def getFreeMemory(self) -> Any:
        raise not_supported('virNodeGetFreeMemory', 20)

    def getFreePages(self, pages: Any, startCell: Any, maxCells: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetFreePages', 20)

    def getHostname(self) -> Any:
        raise not_supported('virConnectGetHostname', 20)

    def getInfo(self) -> Any:
        raise not_supported('virNodeGetInfo', 20)

    def getLibVersion(self) -> Any:
        raise not_supported('virConnectGetLibVersion', 20)

    def getMaxVcpus(self, type: Any) -> Any:
        raise not_supported('virConnectGetMaxVcpus', 20)

    def getMemoryParameters(self, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetMemoryParameters', 20)

    def getMemoryStats(self, cellNum: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetMemoryStats', 20)

    def getSEVInfo(self, flags: Any = 0) -> Any:
        raise not_supported('virNodeGetSEVInfo', 20)

    def getSecurityModel(self) -> Any:
        raise not_supported('virNodeGetSecurityModel', 20)

    def getStoragePoolCapabilities(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectGetStoragePoolCapabilities', 18)

    def getSysinfo(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectGetSysinfo', 20)

    def getType(self) -> Any:
        raise not_supported('virConnectGetType', 20)

    def getURI(self) -> Any:
        raise not_supported('virConnectGetURI', 20)

    def getVersion(self) -> Any:
        raise not_supported('virConnectGetVersion', 20)

    def interfaceDefineXML(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virInterfaceDefineXML', 26)

    def interfaceLookupByMACString(self, macstr: Any) -> Any:
        raise not_supported('virInterfaceLookupByMACString', 26)

    def interfaceLookupByName(self, name: Any) -> Any:
        raise not_supported('virInterfaceLookupByName', 26)

    def isAlive(self) -> Any:
        raise not_supported('virConnectIsAlive', 20)

    def isEncrypted(self) -> Any:
        raise not_supported('virConnectIsEncrypted', 20)

    def isSecure(self) -> Any:
        raise not_supported('virConnectIsSecure', 20)

    def listDefinedDomains(self) -> Any:
        raise not_supported('virConnectListDefinedDomains', 20)

    def listDefinedInterfaces(self) -> Any:
        raise not_supported('virConnectListDefinedInterfaces', 26)

    def listDefinedNetworks(self) -> Any:
        raise not_supported('virConnectListDefinedNetworks', 19)

    def listDefinedStoragePools(self) -> Any:
        raise not_supported('virConnectListDefinedStoragePools', 18)

    def listDevices(self, cap: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeListDevices', 22)

    def listDomainsID(self) -> Any:
        raise not_supported('virConnectListDomainsID', 0)

    def listInterfaces(self) -> Any:
        raise not_supported('virConnectListInterfaces', 26)

    def listNWFilters(self) -> Any:
        raise not_supported('virConnectListNWFilters', 33)

    def listNetworks(self) -> Any:
        raise not_supported('virConnectListNetworks', 19)

    def listSecrets(self) -> Any:
        raise not_supported('virConnectListSecrets', 30)

    def listStoragePools(self) -> Any:
        raise not_supported('virConnectListStoragePools', 18)

    def lookupByID(self, id: Any) -> Any:
        raise not_supported('virDomainLookupByID', 20)

    def lookupByName(self, name: Any) -> Any:
        raise not_supported('virDomainLookupByName', 20)

    def lookupByUUID(self, uuid: Any) -> Any:
        raise not_supported('virDomainLookupByUUID', 20)

    def lookupByUUIDString(self, uuidstr: Any) -> Any:
        raise not_supported('virDomainLookupByUUIDString', 20)

    def networkCreateXML(self, xmlDesc: Any) -> Any:
        raise not_supported('virNetworkCreateXML', 19)

    def networkCreateXMLFlags(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virNetworkCreateXMLFlags', 19)

    def networkDefineXML(self, xml: Any) -> Any:
        raise not_supported('virNetworkDefineXML', 19)

    def networkDefineXMLFlags(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virNetworkDefineXMLFlags', 19)

    def networkLookupByName(self, name: Any) -> Any:
        raise not_supported('virNetworkLookupByName', 19)

    def networkLookupByUUID(self, uuid: Any) -> Any:
        raise not_supported('virNetworkLookupByUUID', 19)

    def networkLookupByUUIDString(self, uuidstr: Any) -> Any:
        raise not_supported('virNetworkLookupByUUIDString', 19)

    def newStream(self, flags: Any = 0) -> Any:
        raise not_supported('virStreamNew', 38)

    def nodeDeviceCreateXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeDeviceCreateXML', 22)

    def nodeDeviceDefineXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeDeviceDefineXML', 22)

    def nodeDeviceLookupByName(self, name: Any) -> Any:
        raise not_supported('virNodeDeviceLookupByName', 22)

    def nodeDeviceLookupSCSIHostByWWN(self, wwnn: Any, wwpn: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeDeviceLookupSCSIHostByWWN', 22)

    def numOfDefinedDomains(self) -> Any:
        raise not_supported('virConnectNumOfDefinedDomains', 20)

    def numOfDefinedInterfaces(self) -> Any:
        raise not_supported('virConnectNumOfDefinedInterfaces', 26)

    def numOfDefinedNetworks(self) -> Any:
        raise not_supported('virConnectNumOfDefinedNetworks', 19)

    def numOfDefinedStoragePools(self) -> Any:
        raise not_supported('virConnectNumOfDefinedStoragePools', 18)

    def numOfDevices(self, cap: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeNumOfDevices', 22)

    def numOfDomains(self) -> Any:
        raise not_supported('virConnectNumOfDomains', 20)

    def numOfInterfaces(self) -> Any:
        raise not_supported('virConnectNumOfInterfaces', 26)

    def numOfNWFilters(self) -> Any:
        raise not_supported('virConnectNumOfNWFilters', 33)

    def numOfNetworks(self) -> Any:
        raise not_supported('virConnectNumOfNetworks', 19)

    def numOfSecrets(self) -> Any:
        raise not_supported('virConnectNumOfSecrets', 30)

    def numOfStoragePools(self) -> Any:
        raise not_supported('virConnectNumOfStoragePools', 18)

    def nwfilterBindingCreateXML(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virNWFilterBindingCreateXML', 33)

    def nwfilterBindingLookupByPortDev(self, portdev: Any) -> Any:
        raise not_supported('virNWFilterBindingLookupByPortDev', 33)

    def nwfilterDefineXML(self, xmlDesc: Any) -> Any:
        raise not_supported('virNWFilterDefineXML', 33)

    def nwfilterDefineXMLFlags(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virNWFilterDefineXMLFlags', 33)

    def nwfilterLookupByName(self, name: Any) -> Any:
        raise not_supported('virNWFilterLookupByName', 33)

    def nwfilterLookupByUUID(self, uuid: Any) -> Any:
        raise not_supported('virNWFilterLookupByUUID', 33)

    def nwfilterLookupByUUIDString(self, uuidstr: Any) -> Any:
        raise not_supported('virNWFilterLookupByUUIDString', 33)

    def restore(self, frm: Any) -> Any:
        raise not_supported('virDomainRestore', 20)

    def restoreFlags(self, frm: Any, dxml: Any = None, flags: Any = 0) -> Any:
        raise not_supported('virDomainRestoreFlags', 20)

    def restoreParams(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainRestoreParams', 20)

    def saveImageDefineXML(self, file: Any, dxml: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSaveImageDefineXML', 20)

    def saveImageGetXMLDesc(self, file: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainSaveImageGetXMLDesc', 20)

    def secretDefineXML(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virSecretDefineXML', 30)

    def secretLookupByUUID(self, uuid: Any) -> Any:
        raise not_supported('virSecretLookupByUUID', 30)

    def secretLookupByUUIDString(self, uuidstr: Any) -> Any:
        raise not_supported('virSecretLookupByUUIDString', 30)

    def secretLookupByUsage(self, usageType: Any, usageID: Any) -> Any:
        raise not_supported('virSecretLookupByUsage', 30)

    def setIdentity(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virConnectSetIdentity', 20)

    def setKeepAlive(self, interval: Any, count: Any) -> Any:
        raise not_supported('virConnectSetKeepAlive', 20)

    def setMemoryParameters(self, params: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeSetMemoryParameters', 20)

    def storagePoolCreateXML(self, xmlDesc: Any, flags: Any = 0) -> Any:
        raise not_supported('virStoragePoolCreateXML', 18)

    def storagePoolDefineXML(self, xml: Any, flags: Any = 0) -> Any:
        raise not_supported('virStoragePoolDefineXML', 18)

    def storagePoolLookupByName(self, name: Any) -> Any:
        raise not_supported('virStoragePoolLookupByName', 18)

    def storagePoolLookupByTargetPath(self, path: Any) -> Any:
        raise not_supported('virStoragePoolLookupByTargetPath', 18)

    def storagePoolLookupByUUID(self, uuid: Any) -> Any:
        raise not_supported('virStoragePoolLookupByUUID', 18)

    def storagePoolLookupByUUIDString(self, uuidstr: Any) -> Any:
        raise not_supported('virStoragePoolLookupByUUIDString', 18)

    def storageVolLookupByKey(self, key: Any) -> Any:
        raise not_supported('virStorageVolLookupByKey', 18)

    def storageVolLookupByPath(self, path: Any) -> Any:
        raise not_supported('virStorageVolLookupByPath', 18)

    def suspendForDuration(self, target: Any, duration: Any, flags: Any = 0) -> Any:
        raise not_supported('virNodeSuspendForDuration', 20)

    def virConnGetLastError(self) -> Any:
        raise not_supported('virConnGetLastError', 0)

    def virConnResetLastError(self) -> Any:
        raise not_supported('virConnResetLastError', 0)

    def domainEventDeregister(self, cb: Any) -> Any:
        raise not_supported('virConnectDomainEventDeregister', 20)

    def domainEventRegister(self, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectDomainEventRegister', 20)

    def domainEventDeregisterAny(self, callbackID: Any) -> Any:
        raise not_supported('virConnectDomainEventDeregisterAny', 20)

    def networkEventDeregisterAny(self, callbackID: Any) -> Any:
        raise not_supported('virConnectNetworkEventDeregisterAny', 19)

    def networkEventRegisterAny(self, net: Any, eventID: Any, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectNetworkEventRegisterAny', 19)

    def domainEventRegisterAny(self, dom: Any, eventID: Any, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectDomainEventRegisterAny', 20)

    def storagePoolEventDeregisterAny(self, callbackID: Any) -> Any:
        raise not_supported('virConnectStoragePoolEventDeregisterAny', 18)

    def storagePoolEventRegisterAny(self, pool: Any, eventID: Any, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectStoragePoolEventRegisterAny', 18)

    def nodeDeviceEventDeregisterAny(self, callbackID: Any) -> Any:
        raise not_supported('virConnectNodeDeviceEventDeregisterAny', 22)

    def nodeDeviceEventRegisterAny(self, dev: Any, eventID: Any, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectNodeDeviceEventRegisterAny', 22)

    def secretEventDeregisterAny(self, callbackID: Any) -> Any:
        raise not_supported('virConnectSecretEventDeregisterAny', 30)

    def secretEventRegisterAny(self, secret: Any, eventID: Any, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectSecretEventRegisterAny', 30)

    def listAllDomains(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllDomains', 20)

    def listAllStoragePools(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllStoragePools', 18)

    def listAllNetworks(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllNetworks', 19)

    def listAllInterfaces(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllInterfaces', 26)

    def listAllDevices(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllNodeDevices', 22)

    def listAllNWFilters(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllNWFilters', 33)

    def listAllNWFilterBindings(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllNWFilterBindings', 33)

    def listAllSecrets(self, flags: Any = 0) -> Any:
        raise not_supported('virConnectListAllSecrets', 30)

    def unregisterCloseCallback(self) -> Any:
        raise not_supported('virConnectUnregisterCloseCallback', 20)

    def registerCloseCallback(self, cb: Any, opaque: Any) -> Any:
        raise not_supported('virConnectRegisterCloseCallback', 20)

    def createXMLWithFiles(self, xmlDesc: Any, files: Any, flags: Any = 0) -> Any:
        raise not_supported('virDomainCreateXMLWithFiles', 20)

    def getAllDomainStats(self, stats: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virConnectGetAllDomainStats', 20)

    def domainListGetStats(self, doms: Any, stats: Any = 0, flags: Any = 0) -> Any:
        raise not_supported('virDomainListGetStats', 20)


class virDomainSnapshot:
    """libvirt.virDomainSnapshot's methods; the unimplemented ones raise."""

    def connect(self) -> Any:
        raise not_supported('virDomainSnapshotConnect', 0)

    def domain(self) -> Any:
        raise not_supported('virDomainSnapshotDomain', 0)

    def c_pointer(self) -> Any:
        raise not_supported('virDomainSnapshot_pointer', 0)

    def delete(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotDelete', 35)

    def getName(self) -> Any:
        raise not_supported('virDomainSnapshotGetName', 35)

    def getParent(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotGetParent', 35)

    def getXMLDesc(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotGetXMLDesc', 35)

    def hasMetadata(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotHasMetadata', 35)

    def isCurrent(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotIsCurrent', 35)

    def listChildrenNames(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotListChildrenNames', 35)

    def numChildren(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotNumChildren', 35)

    def getConnect(self) -> Any:
        raise not_supported('virDomainSnapshotGetConnect', 35)

    def getDomain(self) -> Any:
        raise not_supported('virDomainSnapshotGetDomain', 35)

    def listAllChildren(self, flags: Any = 0) -> Any:
        raise not_supported('virDomainSnapshotListAllChildren', 35)


FUNCTIONS = ('registerErrorHandler', 'openAuth', 'getVersion', 'virEventAddHandle', 'virEventAddTimeout', 'virEventInvokeFreeCallback', 'open', 'openReadOnly', 'virEventRegisterDefaultImpl', 'virEventRegisterImpl', 'virEventRemoveHandle', 'virEventRemoveTimeout', 'virEventRunDefaultImpl', 'virEventUpdateHandle', 'virEventUpdateTimeout', 'virGetLastError', 'virGetLastErrorCode', 'virGetLastErrorDomain', 'virGetLastErrorMessage', 'virInitialize', 'virResetLastError')
CLASSES = ('virDomain', 'virNetwork', 'virNetworkPort', 'virInterface', 'virStoragePool', 'virStorageVol', 'virConnect', 'virNodeDevice', 'virSecret', 'virNWFilter', 'virNWFilterBinding', 'virStream', 'virDomainCheckpoint', 'virDomainSnapshot')


def __getattr__(name: str) -> Any:
    """CONSTANTS, C_NAMES and the classes and functions virtsnap does not implement, from surface_more
    at their first use: a cold CLI command needs none of them (about 1.5 ms of its start)."""
    from . import surface_more

    try:
        value = globals()[name] = getattr(surface_more, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return value
