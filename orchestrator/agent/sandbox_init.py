"""The first program inside every sandbox: it lowers the limits, opens the one way out if there is one,
then becomes (or starts) the command. Standard library only: it runs as `python -I -S -c <this source>`
with the interpreter that runs Cadre, whose code the sandbox may not see.

Arguments: a JSON object, `--`, then the command's argv. The object holds `limits` (`{"NPROC": n,
"DATA": bytes, "FSIZE": bytes, ...}`: resource limits set on this process, so on everything it starts)
and, for external agents, `bridge` (`{"port": p, "socket": path}`): a TCP listener on 127.0.0.1:p inside
the sandbox's own network namespace whose connections are relayed to the egress proxy's unix socket
outside (the command gets HTTP(S)_PROXY pointing at it). Without a bridge the command replaces this
process; with one, this process relays and waits for the command, then exits with its status.

Setting RLIMIT_NPROC here, after the sandbox's user namespace exists, counts the sandbox's processes
only (per-namespace counting); set outside, it would count every process of Cadre's user.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import threading

CHUNK = 65536


def _lower_limits(limits):
    for name, value in limits.items():
        kind = getattr(resource, "RLIMIT_" + name)
        soft, hard = resource.getrlimit(kind)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))


def _pipe(source, target):
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client, path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve_bridge(port, path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)

    def accept():
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_relay, args=(client, path), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main(args):
    split = args.index("--")
    config, command = json.loads(args[0]), args[split + 1:]
    _lower_limits(config.get("limits", {}))
    bridge = config.get("bridge")
    if bridge is None:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write("sandbox: cannot run %s: %s\n" % (command[0], exc.strerror))
            sys.exit(127)
    _serve_bridge(int(bridge["port"]), bridge["socket"])
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        sys.stderr.write("sandbox: cannot run %s: %s\n" % (command[0], exc.strerror))
        sys.exit(127)
    code = child.wait()
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main(sys.argv[1:])
