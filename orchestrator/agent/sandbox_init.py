"""The first program inside every sandbox: it lowers the limits, opens the one way out if there is one,
then becomes the command. Standard library only: it runs as `python -I -S -c <this source>`
with the interpreter that runs Cadre, whose code the sandbox may not see.

Arguments: a JSON object, `--`, then the command's argv. The object holds `limits` (`{"NPROC": n,
"DATA": bytes, "FSIZE": bytes, ...}`: resource limits set on this process, so on everything it starts)
and, for external agents, `bridge` (`{"port": p, "socket": path}`): a TCP listener on 127.0.0.1:p inside
the sandbox's own network namespace, handed over the UNIX socket at `path` to the egress proxy outside,
which accepts the agent's connections on it (the command gets HTTP(S)_PROXY pointing at it; see
`egress_bridge`). Then the command replaces this process: nothing of it stays in the sandbox.

Setting RLIMIT_NPROC here, after the sandbox's user namespace exists, counts the sandbox's processes
only (per-namespace counting); set outside, it would count every process of Cadre's user.
"""

import json
import os
import resource
import socket
import sys

HANDOVER_SECONDS = 30


def _lower_limits(limits):
    for name, value in limits.items():
        kind = getattr(resource, "RLIMIT_" + name)
        soft, hard = resource.getrlimit(kind)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))


def _hand_over_listener(port, path):
    """Listen on 127.0.0.1:port in this namespace, and give the listening socket to the egress proxy outside
    (over the UNIX socket at `path`): it accepts the agent's connections itself. Returns once it has it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    courier = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    courier.settimeout(HANDOVER_SECONDS)
    courier.connect(path)
    socket.send_fds(courier, [b"listener"], [listener.fileno()])
    if courier.recv(1) != b"1":
        raise OSError("the egress proxy did not take the bridge")
    courier.close()
    listener.close()


def main(args):
    split = args.index("--")
    config, command = json.loads(args[0]), args[split + 1:]
    _lower_limits(config.get("limits", {}))
    bridge = config.get("bridge")
    if bridge is not None:
        try:
            _hand_over_listener(int(bridge["port"]), bridge["socket"])
        except OSError as exc:
            sys.stderr.write("sandbox: no way out to the egress proxy: %s\n" % (exc.strerror or exc))
            sys.exit(125)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write("sandbox: cannot run %s: %s\n" % (command[0], exc.strerror))
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
