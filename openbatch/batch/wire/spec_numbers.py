"""Where the numbers are in Batch request bodies: generated from BatchService-2024-07-01.20.0.json.

Do not edit: run ``python scripts/gen_spec_numbers.py``. ``BODIES`` maps an operation
(``METHOD /path/{}``) to its body's definition; ``SHAPES`` maps a definition to its properties that
are numbers (``int32``, ``int64``, ``double``), objects holding numbers (``@Definition``) or arrays
of either (``[...]``).
"""

from __future__ import annotations

BODIES: dict[str, str] = {
    "PATCH /jobs/{}": "JobPatchParameter",
    "PATCH /jobschedules/{}": "JobSchedulePatchParameter",
    "PATCH /pools/{}": "PoolPatchParameter",
    "POST /jobs": "JobAddParameter",
    "POST /jobs/{}/addtaskcollection": "TaskAddCollectionParameter",
    "POST /jobs/{}/tasks": "TaskAddParameter",
    "POST /jobschedules": "JobScheduleAddParameter",
    "POST /pools": "PoolAddParameter",
    "POST /pools/{}/resize": "PoolResizeParameter",
    "POST /pools/{}/updateproperties": "PoolUpdatePropertiesParameter",
    "PUT /jobs/{}": "JobUpdateParameter",
    "PUT /jobs/{}/tasks/{}": "TaskUpdateParameter",
    "PUT /jobschedules/{}": "JobScheduleUpdateParameter",
}

SHAPES: dict[str, dict[str, str]] = {
    "AutoPoolSpecification": {
        "pool": "@PoolSpecification",
    },
    "DataDisk": {
        "diskSizeGB": "int32",
        "lun": "int32",
    },
    "ExitCodeMapping": {
        "code": "int32",
    },
    "ExitCodeRangeMapping": {
        "end": "int32",
        "start": "int32",
    },
    "ExitConditions": {
        "exitCodeRanges": "[@ExitCodeRangeMapping]",
        "exitCodes": "[@ExitCodeMapping]",
    },
    "InboundNATPool": {
        "backendPort": "int32",
        "frontendPortRangeEnd": "int32",
        "frontendPortRangeStart": "int32",
        "networkSecurityGroupRules": "[@NetworkSecurityGroupRule]",
    },
    "JobAddParameter": {
        "constraints": "@JobConstraints",
        "jobManagerTask": "@JobManagerTask",
        "jobPreparationTask": "@JobPreparationTask",
        "maxParallelTasks": "int32",
        "poolInfo": "@PoolInformation",
        "priority": "int32",
    },
    "JobConstraints": {
        "maxTaskRetryCount": "int32",
    },
    "JobManagerTask": {
        "constraints": "@TaskConstraints",
        "requiredSlots": "int32",
    },
    "JobPatchParameter": {
        "constraints": "@JobConstraints",
        "maxParallelTasks": "int32",
        "poolInfo": "@PoolInformation",
        "priority": "int32",
    },
    "JobPreparationTask": {
        "constraints": "@TaskConstraints",
    },
    "JobScheduleAddParameter": {
        "jobSpecification": "@JobSpecification",
    },
    "JobSchedulePatchParameter": {
        "jobSpecification": "@JobSpecification",
    },
    "JobScheduleUpdateParameter": {
        "jobSpecification": "@JobSpecification",
    },
    "JobSpecification": {
        "constraints": "@JobConstraints",
        "jobManagerTask": "@JobManagerTask",
        "jobPreparationTask": "@JobPreparationTask",
        "maxParallelTasks": "int32",
        "poolInfo": "@PoolInformation",
        "priority": "int32",
    },
    "JobUpdateParameter": {
        "constraints": "@JobConstraints",
        "maxParallelTasks": "int32",
        "poolInfo": "@PoolInformation",
        "priority": "int32",
    },
    "LinuxUserConfiguration": {
        "gid": "int32",
        "uid": "int32",
    },
    "MultiInstanceSettings": {
        "numberOfInstances": "int32",
    },
    "NetworkConfiguration": {
        "endpointConfiguration": "@PoolEndpointConfiguration",
    },
    "NetworkSecurityGroupRule": {
        "priority": "int32",
    },
    "OSDisk": {
        "diskSizeGB": "int32",
    },
    "PoolAddParameter": {
        "networkConfiguration": "@NetworkConfiguration",
        "startTask": "@StartTask",
        "targetDedicatedNodes": "int32",
        "targetLowPriorityNodes": "int32",
        "taskSlotsPerNode": "int32",
        "upgradePolicy": "@UpgradePolicy",
        "userAccounts": "[@UserAccount]",
        "virtualMachineConfiguration": "@VirtualMachineConfiguration",
    },
    "PoolEndpointConfiguration": {
        "inboundNATPools": "[@InboundNATPool]",
    },
    "PoolInformation": {
        "autoPoolSpecification": "@AutoPoolSpecification",
    },
    "PoolPatchParameter": {
        "networkConfiguration": "@NetworkConfiguration",
        "startTask": "@StartTask",
        "taskSlotsPerNode": "int32",
        "upgradePolicy": "@UpgradePolicy",
        "userAccounts": "[@UserAccount]",
        "virtualMachineConfiguration": "@VirtualMachineConfiguration",
    },
    "PoolResizeParameter": {
        "targetDedicatedNodes": "int32",
        "targetLowPriorityNodes": "int32",
    },
    "PoolSpecification": {
        "networkConfiguration": "@NetworkConfiguration",
        "startTask": "@StartTask",
        "targetDedicatedNodes": "int32",
        "targetLowPriorityNodes": "int32",
        "taskSlotsPerNode": "int32",
        "upgradePolicy": "@UpgradePolicy",
        "userAccounts": "[@UserAccount]",
        "virtualMachineConfiguration": "@VirtualMachineConfiguration",
    },
    "PoolUpdatePropertiesParameter": {
        "startTask": "@StartTask",
    },
    "RollingUpgradePolicy": {
        "maxBatchInstancePercent": "int32",
        "maxUnhealthyInstancePercent": "int32",
        "maxUnhealthyUpgradedInstancePercent": "int32",
    },
    "StartTask": {
        "maxTaskRetryCount": "int32",
    },
    "TaskAddCollectionParameter": {
        "value": "[@TaskAddParameter]",
    },
    "TaskAddParameter": {
        "constraints": "@TaskConstraints",
        "dependsOn": "@TaskDependencies",
        "exitConditions": "@ExitConditions",
        "multiInstanceSettings": "@MultiInstanceSettings",
        "requiredSlots": "int32",
    },
    "TaskConstraints": {
        "maxTaskRetryCount": "int32",
    },
    "TaskDependencies": {
        "taskIdRanges": "[@TaskIdRange]",
    },
    "TaskIdRange": {
        "end": "int32",
        "start": "int32",
    },
    "TaskUpdateParameter": {
        "constraints": "@TaskConstraints",
    },
    "UpgradePolicy": {
        "rollingUpgradePolicy": "@RollingUpgradePolicy",
    },
    "UserAccount": {
        "linuxUserConfiguration": "@LinuxUserConfiguration",
    },
    "VirtualMachineConfiguration": {
        "dataDisks": "[@DataDisk]",
        "osDisk": "@OSDisk",
    },
}
