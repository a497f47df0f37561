#!/usr/bin/env bash
# The lean core installs on its own and serves: `pip install .` in a fresh venv pulls none of the extras'
# heavy packages, and from that venv alone (run outside the repository, so its sources are not on the path)
# the default model builds the seed corpus, answers a search on the CLI and over HTTP; a feature of an
# extra names its extra. Prints the venv's size. Usage: scripts/package_check.sh [python]
set -euo pipefail
PYTHON=${1:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package-check: $*" >&2; exit 1; }

"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/python" -m pip install --quiet "$REPO" 2>"$work/pip.log" || { cat "$work/pip.log" >&2; fail "pip install . failed"; }

# None of these may come with the core (each belongs to an extra: docs/install.md).
installed=$("$bin/python" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr 'A-Z_' 'a-z-')
for heavy in torch sentence-transformers ray pyarrow matplotlib mcp nvidia-cublas-cu12; do
  if grep -qx "$heavy" <<<"$installed"; then fail "the core install pulled $heavy"; fi
done

cd "$work"  # away from the repository: only the installed package is importable
# Every data file of the package (pages, bundled YAML) is installed with it.
installed_pkg=$("$bin/python" -c 'import pathlib, retriever; print(pathlib.Path(retriever.__file__).parent)')
(cd "$REPO/retriever" && find . -type f ! -name '*.py' ! -name '*.pyc' ! -path '*/__pycache__/*') | while read -r file; do
  [ -f "$installed_pkg/$file" ] || fail "retriever/${file#./} is not installed by pip install . (pyproject.toml package-data)"
done
"$bin/faq-retriever" --help | grep -q "^usage: faq-retriever" || fail "faq-retriever --help does not name faq-retriever"
"$bin/faq-retriever" build --corpus "$REPO/corpus" --out "$work/index" --quiet >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; fail "faq-retriever build of the seed corpus failed"; }
"$bin/faq-retriever" search --index "$work/index" "一建注销怎么弄" >"$work/search.log" 2>&1 \
  || { cat "$work/search.log" >&2; fail "faq-retriever search failed"; }
grep -q "^decision: answer" "$work/search.log" && grep -q "\[cancel-01\]" "$work/search.log" \
  || { cat "$work/search.log" >&2; fail "faq-retriever search did not answer cancel-01"; }

# A feature of an extra: exit 2 and the pip command that brings it, not a traceback.
set +e
"$bin/faq-retriever" build --corpus "$REPO/corpus" --out "$work/index-sbert" --model "$work/no-model" --quiet \
  >"$work/extra.log" 2>&1
status=$?
set -e
[ "$status" = 2 ] && grep -q "pip install 'faq-retriever\[sbert\]'" "$work/extra.log" \
  || { cat "$work/extra.log" >&2; fail "a sentence-transformers model without torch did not name the [sbert] extra"; }

# The default serve: one worker on a free loopback port, one search over HTTP, bounded waits.
port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/faq-retriever" serve --index "$work/index" --host 127.0.0.1 --port "$port" --workers 1 >"$work/serve.log" 2>&1 &
server=$!
url="http://127.0.0.1:$port"
"$bin/python" - "$url" <<'EOF' || { cat "$work/serve.log" >&2; fail "the served search did not answer"; }
import json, sys, time, urllib.parse, urllib.request
url = sys.argv[1]
deadline = time.monotonic() + 90
while True:
    try:
        urllib.request.urlopen(url + "/readyz", timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("not ready in 90 s")
        time.sleep(0.5)
query = urllib.parse.quote("一建注销怎么弄")
with urllib.request.urlopen(f"{url}/v1/search?q={query}", timeout=30) as response:
    body = json.load(response)
assert body["decision"] == "answer" and body["results"][0]["faq_id"] == "cancel-01", body
EOF
kill "$server"; wait "$server" 2>/dev/null || true; server=""

echo "package-check: pip install . pulled no torch/sentence-transformers/ray/pyarrow/matplotlib/mcp;"
echo "package-check: from it alone the seed corpus built, the CLI and the served /v1/search answered: ok"
echo "package-check: core venv size $(du -sh "$work/venv" | cut -f1)"
