"""The environment of a task process: Azure Batch's documented ``AZ_BATCH_*`` variables and more.

What a Linux node of Azure Batch gives a task (see "Azure Batch runtime environment variables"):
the account, pool, node, job and task ids, the node's directories, the task's directories, the
job preparation task's directories, the task user, multi-instance host lists, application
package locations, then the job's ``commonEnvironmentSettings`` and the task's own
``environmentSettings`` (the task's win on equal names). As on Azure, ``HOME`` is the task's
working directory and ``PATH`` ends with the shared directory and the working directory.

Only a few variables of the server's own environment pass through (``PATH``, locale, time zone,
temp dir): a task never sees the server's secrets. User settings cannot replace ``AZ_BATCH_*``
variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openbatch.node import trust
from openbatch.node.layout import WORKING_DIR, NodeLayout

PASS_THROUGH = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Documented as "the threshold for disk space upon which the VM will be marked as DiskFull".
RESERVED_DISK_BYTES = 1_000_000
_RESERVED = str(RESERVED_DISK_BYTES)
_NON_WORD = re.compile(r"[^0-9A-Za-z_]")


def identity_name(user_identity: Mapping[str, Any] | None) -> str:
    """AZ_BATCH_TASK_USER_IDENTITY: ``PoolNonAdmin``, ``PoolAdmin``, ``TaskNonAdmin``, ``TaskAdmin`` or a user name."""
    if not user_identity:
        return "PoolNonAdmin"
    name = user_identity.get("username") or user_identity.get("userName")
    if name:
        return str(name)
    auto = user_identity.get("autoUser") or {}
    scope = "Task" if str(auto.get("scope") or "pool").lower() == "task" else "Pool"
    admin = str(auto.get("elevationLevel") or "nonadmin").lower() == "admin"
    return f"{scope}{'Admin' if admin else 'NonAdmin'}"


def app_package_names(application_id: str, version: str | None) -> list[str]:
    """The variable names of one package: as documented (``_FOO_1``) and in the lower-case form Linux nodes use."""
    suffix = application_id if version is None else f"{application_id}_{version}"
    exact = "AZ_BATCH_APP_PACKAGE_" + _NON_WORD.sub("_", suffix)
    lower = "AZ_BATCH_APP_PACKAGE_" + _NON_WORD.sub("_", suffix).lower()
    return [exact] if exact == lower else [exact, lower]


def _process_vars(base: Mapping[str, str], shared: str, wd: str, task_user: str | None) -> dict[str, str]:
    """What passes from the server's environment, and PATH/HOME/USER as a Linux node sets them."""
    env = {name: base[name] for name in PASS_THROUGH if name in base}
    env["PATH"] = f"{env.get('PATH') or DEFAULT_PATH}:{shared}:{wd}"
    env["HOME"] = wd
    if task_user:
        env["USER"] = env["LOGNAME"] = task_user
    return env


def _directory_vars(root: str, task: str, certificates: str) -> dict[str, str]:
    return {
        "AZ_BATCH_NODE_ROOT_DIR": root,
        "AZ_BATCH_NODE_SHARED_DIR": f"{root}/shared",
        "AZ_BATCH_NODE_STARTUP_DIR": f"{root}/startup",
        "AZ_BATCH_NODE_STARTUP_WORKING_DIR": f"{root}/startup/{WORKING_DIR}",
        "AZ_BATCH_NODE_MOUNTS_DIR": f"{root}/fsmounts",
        "AZ_BATCH_TASK_DIR": task,
        "AZ_BATCH_TASK_WORKING_DIR": f"{task}/{WORKING_DIR}",
        "AZ_BATCH_CERTIFICATES_DIR": certificates,
    }


def _multi_instance(host_ips: Sequence[str], node_ip: str, task_dir: Path) -> dict[str, str]:
    master = host_ips[0]
    return {
        "AZ_BATCH_HOST_LIST": ",".join(host_ips),
        "AZ_BATCH_NODE_LIST": ";".join(host_ips),
        "AZ_BATCH_MASTER_NODE": f"{master}:6000",
        "AZ_BATCH_IS_CURRENT_NODE_MASTER": "true" if node_ip == master else "false",
        "AZ_BATCH_TASK_SHARED_DIR": str(task_dir),
        "CCP_NODES": " ".join([str(len(host_ips)), *(f"{ip} 1" for ip in host_ips)]),
    }


def task_environment(
    *,
    account_name: str,
    account_url: str,
    pool_id: str,
    node_id: str,
    node_ip: str,
    layout: NodeLayout,
    task_dir: Path,
    task_id: str | None,
    job_id: str | None,
    is_dedicated: bool,
    user_identity: Mapping[str, Any] | None,
    job_prep_dir: Path | None,
    settings: Sequence[Mapping[str, Any]],
    base: Mapping[str, str],
    task_user: str | None = None,
    host_ips: Sequence[str] | None = None,
    app_packages: Sequence[tuple[str, str | None, Path]] = (),
    authentication_token: str | None = None,
) -> dict[str, str]:
    """The complete environment of one task process.

    ``task_id``/``job_id`` are None for a start task; ``job_prep_dir`` is given for the tasks of
    a job that has a job preparation task (not for that task itself). ``settings`` is the job's
    common settings followed by the task's own. ``task_user`` is the OS account the process runs
    as (AZ_BATCH_TASK_USER, USER). ``host_ips`` lists the nodes of a multi-instance task (primary
    first). ``app_packages`` holds (application id, version or None for the default, directory).
    """
    root, task = str(layout.root), str(task_dir)
    env = _process_vars(base, f"{root}/shared", f"{task}/{WORKING_DIR}", task_user)
    env.update(trust.task_variables(layout))  # before the task's own settings, which win
    for setting in settings:
        name = setting.get("name")
        if name and not str(name).startswith("AZ_BATCH_"):
            value = setting.get("value")
            env[str(name)] = "" if value is None else str(value)
    env.update(
        AZ_BATCH_ACCOUNT_NAME=account_name,
        AZ_BATCH_ACCOUNT_URL=account_url,
        AZ_BATCH_POOL_ID=pool_id,
        AZ_BATCH_NODE_ID=node_id,
        AZ_BATCH_NODE_IS_DEDICATED="true" if is_dedicated else "false",
        AZ_BATCH_TASK_USER_IDENTITY=identity_name(user_identity),
        AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES=_RESERVED,
    )
    env.update(_directory_vars(root, task, str(layout.certificates(start_task=task_id is None))))
    if task_user:
        env["AZ_BATCH_TASK_USER"] = task_user
    if job_id is not None:
        env["AZ_BATCH_JOB_ID"] = job_id
    if task_id is not None:
        env["AZ_BATCH_TASK_ID"] = task_id
    if job_prep_dir is not None:
        env["AZ_BATCH_JOB_PREP_DIR"] = prep = str(job_prep_dir)
        env["AZ_BATCH_JOB_PREP_WORKING_DIR"] = f"{prep}/{WORKING_DIR}"
    if host_ips:
        env.update(_multi_instance(host_ips, node_ip, task_dir))
    for application_id, version, directory in app_packages:
        for name in app_package_names(application_id, version):
            env[name] = str(directory)
    if authentication_token:
        env["AZ_BATCH_AUTHENTICATION_TOKEN"] = authentication_token
    return env
