"""The remote shell of multi-instance tasks on one host: what ``mpirun`` calls instead of ``ssh``.

On Azure the nodes of a multi-instance task are VMs that reach each other over ssh; Open MPI's
``mpirun`` starts its daemon on every other node with ``ssh HOST orted ...``. Nodes of the local
provider are not machines, so the engine points ``OMPI_MCA_plm_rsh_agent`` of a multi-instance task
at this agent, which starts the command on the node that HOST names (an entry of
``AZ_BATCH_HOST_LIST``): with that node's ``AZ_BATCH_NODE_*`` and task directory variables and in
its task's working directory, so that node's reboot or removal kills it like any of its processes
(they are found by ``AZ_BATCH_NODE_ROOT_DIR``). The command is a shell command line, as ssh runs it.

The agent is a POSIX shell script carried in the task's environment (``OPENBATCH_RSH_AGENT``) and
run by ``/bin/sh``, not a program on disk: a task running as an unprivileged account may not be able
to reach the server's Python (a pyenv under ``/root``, say). ``AGENT`` is the value of
``OMPI_MCA_plm_rsh_agent``: Open MPI splits it at spaces, so the script is reached through
``eval${IFS}"$OPENBATCH_RSH_AGENT"``, one word without a space. ``OPENBATCH_INSTANCE_NODES``
(``host=node id`` pairs separated by commas) says which node a host name is; the nodes are
siblings of the calling one (``AZ_BATCH_NODE_ROOT_DIR``'s parent).

``mpirun`` also passes the agent's value on the daemon's command line, which the remote shell
evaluates: the agent unsets ``OPENBATCH_RSH_AGENT`` before it runs the command, so that value reads
as a harmless string there, and the daemons are started by ``mpirun`` itself
(``plm_rsh_no_tree_spawn``), never by each other.
"""

from __future__ import annotations

AGENT = '/bin/sh -c eval${IFS}"$OPENBATCH_RSH_AGENT" openbatch-rshagent'

_DIR_VARS = ("AZ_BATCH_TASK_DIR AZ_BATCH_TASK_WORKING_DIR AZ_BATCH_TASK_SHARED_DIR AZ_BATCH_NODE_SHARED_DIR "
             "AZ_BATCH_NODE_STARTUP_DIR AZ_BATCH_NODE_STARTUP_WORKING_DIR AZ_BATCH_NODE_MOUNTS_DIR "
             "AZ_BATCH_JOB_PREP_DIR AZ_BATCH_JOB_PREP_WORKING_DIR AZ_BATCH_CERTIFICATES_DIR HOME PWD PATH")

SCRIPT = r"""
while [ $# -gt 0 ]; do case $1 in -l|-p|-o|-i|-F) shift 2;; -*) shift;; *) break;; esac; done
if [ $# -lt 2 ]; then echo "usage: openbatch-rshagent HOST COMMAND..." >&2; exit 255; fi
ob_host=$1; shift
ob_node=
for ob_pair in $(printf '%s' "$OPENBATCH_INSTANCE_NODES" | tr ',' ' '); do
    if [ "${ob_pair%%=*}" = "$ob_host" ]; then ob_node=${ob_pair#*=}; fi
done
if [ -z "$ob_node" ] || [ -z "$AZ_BATCH_NODE_ROOT_DIR" ]; then
    echo "openbatch-rshagent: $ob_host is no node of this multi-instance task" >&2; exit 255
fi
ob_here=$AZ_BATCH_NODE_ROOT_DIR
ob_there=${ob_here%/*}/$ob_node
for ob_var in @DIR_VARS@; do
    eval "ob_value=\${$ob_var-}"
    ob_new=
    ob_rest=$ob_value
    while [ -n "$ob_rest" ]; do
        ob_item=${ob_rest%%:*}
        case $ob_rest in *:*) ob_rest=${ob_rest#*:};; *) ob_rest=;; esac
        case $ob_item in "$ob_here"|"$ob_here"/*) ob_item=$ob_there${ob_item#"$ob_here"};; esac
        ob_new=${ob_new:+$ob_new:}$ob_item
    done
    if [ -n "$ob_value" ]; then export "$ob_var=$ob_new"; fi
done
export AZ_BATCH_NODE_ROOT_DIR="$ob_there" AZ_BATCH_NODE_ID="$ob_node"
case ",$AZ_BATCH_HOST_LIST," in ",$ob_host,"*) AZ_BATCH_IS_CURRENT_NODE_MASTER=true;;
    *) AZ_BATCH_IS_CURRENT_NODE_MASTER=false;; esac
export AZ_BATCH_IS_CURRENT_NODE_MASTER
unset OPENBATCH_RSH_AGENT
cd "${AZ_BATCH_TASK_WORKING_DIR:-$ob_there}" 2>/dev/null || cd "$ob_there" || exit 255
exec /bin/sh -c "$*"
""".replace("@DIR_VARS@", _DIR_VARS)


def environment(hosts: list[str], node_ids: list[str]) -> list[dict[str, str]]:
    """The environment settings that make ``mpirun`` reach the nodes of a multi-instance task."""
    pairs = ",".join(f"{h}={n}" for h, n in zip(hosts, node_ids, strict=True))
    return [{"name": "OMPI_MCA_plm_rsh_agent", "value": AGENT}, {"name": "OMPI_MCA_plm_rsh_no_tree_spawn", "value": "1"},
            {"name": "OPENBATCH_RSH_AGENT", "value": SCRIPT}, {"name": "OPENBATCH_INSTANCE_NODES", "value": pairs}]
