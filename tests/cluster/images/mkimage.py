#!/usr/bin/env python3
"""Writes a one-layer container image as a docker-archive tar, for `ctr images import` on the
test node (no registry, no Docker engine).

    mkimage.py OUT.tar REF[,REF...] --entrypoint /NAME --user UID:GID FILE=PATH_IN_IMAGE ... [--libs BINARY]

The layer holds the given files, /etc/passwd and /etc/group (root, nobody, nonroot), an empty
/tmp, the system's CA bundle, and with --libs the shared libraries BINARY needs (as ldd lists
them), at the paths the dynamic loader looks in: the layout of a distroless `cc` image.
"""
import argparse, hashlib, io, json, os, subprocess, sys, tarfile, time

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
CA = "/etc/ssl/certs/ca-certificates.crt"


def libraries(binary):
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.append(parts[2])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return found


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("ref", help="the image's names, comma-separated")
    p.add_argument("files", nargs="*", help="HOST_FILE=PATH_IN_IMAGE")
    p.add_argument("--entrypoint", required=True)
    p.add_argument("--user", default="65532:65532")
    p.add_argument("--libs", action="append", default=[], help="a binary whose shared libraries go in too")
    a = p.parse_args()

    layer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = set()

        def add_dirs(path):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    t.addfile(info)

        def add_bytes(path, data, mode=0o644):
            add_dirs(path)
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            t.addfile(info, io.BytesIO(data))

        def add_file(host, path):
            with open(host, "rb") as f:
                add_bytes(path, f.read(), 0o755 if os.access(host, os.X_OK) else 0o644)

        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode, tmp.mtime = tarfile.DIRTYPE, 0o1777, now
        t.addfile(tmp)
        add_bytes("/etc/passwd", PASSWD.encode())
        add_bytes("/etc/group", GROUP.encode())
        if os.path.exists(CA):
            add_file(CA, CA)
        for spec in a.files:
            host, _, path = spec.partition("=")
            add_file(host, path)
        seen = set()
        for binary in a.libs:
            for lib in libraries(binary):
                if lib not in seen:
                    seen.add(lib)
                    add_file(os.path.realpath(lib), lib)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [a.entrypoint], "User": a.user, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": a.ref.split(","), "Layers": ["layer.tar"]}]
    with tarfile.open(a.out + ".tmp", mode="w") as out:
        for name, data in [("layer.tar", layer_bytes), (config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            out.addfile(info, io.BytesIO(data))
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    sys.exit(main())
