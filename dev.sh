#!/usr/bin/env bash
# The two commands of the quick start:
#   ./dev.sh demo   set up .venv and run the main job (the embedded default benchmark)
#   ./dev.sh test   set up .venv and run the whole test suite
#   ./dev.sh lint   set up .venv and run ruff with the rules in pyproject.toml
#   ./dev.sh dist   build the sdist and wheel of all five distributions into
#                   dist/ (each wheel from its sdist) and run `twine check` on them;
#                   `./dev.sh dist DIR` builds into DIR instead
# Set-up is skipped when .venv is already up to date with requirements-dev.txt and the
# pyproject files. PYIMGANO_VENV chooses another virtual environment folder.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")"
VENV="${PYIMGANO_VENV:-.venv}"
PY="${PYTHON:-python3}"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating virtual environment in $VENV" >&2
        "$PY" -m venv "$VENV"
    fi
    local stamp
    stamp=$(cat requirements-dev.txt VERSION pyimgano-*/pyproject.toml tests/plugins/*/pyproject.toml | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.dev-stamp" 2>/dev/null)" != "$stamp" ]; then
        echo "installing pyimgano (four distributions, editable) and test tools into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2> >(grep -v "^WARNING: Location" >&2)
        echo "$stamp" > "$VENV/.dev-stamp"
    fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        setup
        # the embedded default benchmark: faiss:patchcore (offline backbone) on `synthetic`;
        # extra arguments go to `pyimgano benchmark` (e.g. --force, --jobs 2)
        exec "$VENV/bin/pyimgano" benchmark --out runs/demo "$@"
        ;;
    test)
        setup
        set +e
        "$VENV/bin/python" -m pytest "$@"
        rc=$?
        set -e
        if [ "$rc" -eq 5 ]; then
            echo "error: pytest collected no tests" >&2
            exit 1
        fi
        exit "$rc"
        ;;
    lint)
        setup
        exec "$VENV/bin/ruff" check "$@"
        ;;
    dist)
        # needs only the build tools (requirements-dev.txt's build, twine and setuptools lines), not
        # the whole development set-up, so a release job can run it on a bare Python
        [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
        grep -E '^(build|twine|setuptools)[<>=~ ]' requirements-dev.txt | sed 's/ *#.*//' \
            | xargs "$VENV/bin/python" -m pip install -q --disable-pip-version-check 2> >(grep -v "^WARNING: Location" >&2)
        out="${1:-dist}"
        mkdir -p "$out"
        rm -f "$out"/pyimgano[-_]*.whl "$out"/pyimgano[-_]*.tar.gz  # the last build's, nothing else
        # `pyimgano` (this folder: the install line users type) and the four it ties together;
        # the build tools are the ones in .venv (requirements-dev.txt), not downloaded per build
        for project in . pyimgano-core pyimgano-datasets pyimgano-faiss pyimgano-anomalib; do
            echo "building $project" >&2
            "$VENV/bin/python" -m build --quiet --no-isolation --outdir "$out" "$project" >/dev/null
        done
        rm -rf pyimgano.egg-info  # metadata that building `pyimgano` leaves in this folder
        "$VENV/bin/twine" check --strict "$out"/*
        ls -l "$out" >&2
        ;;
    setup)
        setup
        ;;
    *)
        echo "usage: ./dev.sh demo|test|lint|dist|setup [args...]" >&2
        exit 2
        ;;
esac
