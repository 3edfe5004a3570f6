#!/usr/bin/env bash
# Installs what the tests need when it is missing, restores, builds and runs the whole test suite.
# Exits non-zero on any failure. Prints "N passed, N failed" at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

packages=(swtpm swtpm-tools tpm2-tools cryptsetup-bin fuse3 libfuse3-3 fuse2fs e2fsprogs age etcd-server etcd-client)
missing=()
command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
command -v swtpm_ioctl >/dev/null 2>&1 || missing+=(swtpm-tools)
command -v tpm2_quote >/dev/null 2>&1 || missing+=(tpm2-tools)
command -v cryptsetup >/dev/null 2>&1 || [[ -x /usr/sbin/cryptsetup ]] || [[ -x /sbin/cryptsetup ]] || missing+=(cryptsetup-bin)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v fuse2fs >/dev/null 2>&1 || [[ -x /usr/sbin/fuse2fs ]] || missing+=(fuse2fs)
command -v mkfs.ext4 >/dev/null 2>&1 || [[ -x /usr/sbin/mkfs.ext4 ]] || [[ -x /sbin/mkfs.ext4 ]] || missing+=(e2fsprogs)
command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1 || missing+=(age)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
if (( ${#missing[@]} > 0 )); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "test.sh: missing packages: ${missing[*]}" >&2
    echo "test.sh: as root run: apt-get install -y ${packages[*]}" >&2
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v dotnet >/dev/null 2>&1; then
  echo "test.sh: the .NET SDK (dotnet) is required" >&2
  exit 1
fi

results="$root/TestResults"
rm -rf "$results"
dotnet restore Asterism.slnx -v q
dotnet build Asterism.slnx -c Release --no-restore -v q -nologo
dotnet format Asterism.slnx --verify-no-changes --no-restore -v q || { echo "test.sh: 'dotnet format' found style problems; run 'dotnet format Asterism.slnx'" >&2; exit 1; }

status=0
# One test assembly at a time (MaxCpuCount=1): the end-to-end suites boot whole clusters (mkfs, FUSE, attested TLS)
# on two cores, and the Disk and Fuse suites' Argon2 and I/O running beside them starved those boots into timeouts.
dotnet test Asterism.slnx -c Release --no-build --nologo \
  --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results" -- RunConfiguration.TreatNoTestsAsError=false RunConfiguration.MaxCpuCount=1 || status=$?

passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [[ -f "$trx" ]] || continue
  counters="$(grep -o '<Counters [^>]*>' "$trx" | head -1)"
  p="$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")"
  f="$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")"
  t="$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")"
  e="$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters")"
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
if (( status != 0 || failed > 0 || passed == 0 )); then
  exit 1
fi
