#!/usr/bin/env bash
# The layering check: fails when a module of src/ imports one it must not (see the crate docs'
# "Layers" section). Every `crate::` and `super::` path outside comments and test modules is
# resolved to the module it names, and each module's layer may use only the layers listed for it
# below. Needs only bash and awk. `bash scripts/layers.sh -v` also prints every edge it checked.
set -euo pipefail
cd "$(dirname "$0")/.."

verbose=${1:-}

find src -name '*.rs' ! -name 'tests.rs' ! -name 'loom_tests.rs' | sort | awk -v verbose="$verbose" '
# The layer of a module path (crate::a::b::c), by its longest known prefix.
function layer(m) {
    if (m ~ /^crate::op(::|$)/ || m == "crate::Pid") return "op"
    if (m ~ /^crate::sync(::|$)/) return "sync"
    if (m ~ /^crate::timer(::|$)/) return "timer"
    if (m ~ /^crate::sandbox(::|$)/) return "sandbox"
    if (m ~ /^crate::process(::|$)/) return "process"
    if (m ~ /^crate::syscalls::iouring::(ring|cancel|metrics|stats|stream|future|throttle)(::|$)/) return "ring"
    if (m ~ /^crate::syscalls(::|$)/) return "core"
    if (m ~ /^crate::tenant(::|$)/) return "handles"
    if (m ~ /^crate::backend::(file_ops|net_ops|time_ops|reactor)(::|$)/) return "family"
    if (m ~ /^crate::backend::(uring|blocking|tokio|smol)(::|$)/) return "runtime"
    if (m ~ /^crate::backend::select(::|$)/) return "select"
    if (m ~ /^crate::backend(::|$)/) return "door"
    if (m == "crate") return "root"
    return "unknown"
}
# What each layer may use, besides itself. A runtime knows the rings only through the door; the
# ring knows nothing of the executor; the core names no runtime (it asks `select`).
BEGIN {
    allowed["op"] = ""
    allowed["sync"] = ""
    allowed["timer"] = ""
    allowed["sandbox"] = " op "
    allowed["process"] = " op sandbox "
    allowed["ring"] = " op sync timer sandbox process "
    allowed["door"] = " op sync timer sandbox process ring family "
    allowed["family"] = " op sync timer sandbox process door "
    allowed["runtime"] = " op sync timer sandbox process door family "
    allowed["select"] = " op door runtime "
    allowed["core"] = " op sync timer sandbox process ring door select "
    allowed["handles"] = " op sandbox process core "
    allowed["root"] = " op sync timer sandbox process ring door family runtime select core handles "
    bad = 0
}
# The module a file is: src/a/b.rs is crate::a::b, src/a/mod.rs is crate::a, src/lib.rs crate.
function module_of(file,   m) {
    m = file
    sub(/^src\//, "", m); sub(/\.rs$/, "", m); sub(/(^|\/)(mod|lib)$/, "", m)
    gsub(/\//, "::", m)
    return m == "" ? "crate" : "crate::" m
}
function parent(m) {
    if (m == "crate") return "crate"
    sub(/::[a-z_0-9]+$/, "", m)
    return m
}
# Resolves a path as written in `file` (starting with crate:: or super::) to a module path.
function resolve(path, self,   m) {
    m = self
    if (path ~ /^super(::|$)/) {
        while (path ~ /^super(::|$)/) { m = parent(m); sub(/^super(::)?/, "", path) }
        return path == "" ? m : m "::" path
    }
    return path
}
# A path names a runtime if it goes through one of their modules or names one of their types.
function check(file, line, path,   self, target, from, to, names) {
    self = module_of(file)
    target = resolve(path, self)
    from = layer(self)
    to = layer(target)
    names = target ~ /(Blocking|Uring|Tokio|Smol)Backend/
    if (names && from != "runtime" && from != "select" && from != "root") to = "runtime"
    if (verbose != "") printf "%s:%d %s -> %s (%s)\n", file, line, from, to, target
    if (from == "unknown" || to == "unknown") {
        printf "%s:%d: %s: module not placed in any layer (add it to scripts/layers.sh)\n", file, line, target
        bad = 1
    } else if (from != to && index(allowed[from], " " to " ") == 0) {
        printf "%s:%d: the %s layer (%s) may not use the %s layer (%s)\n", file, line, from, self, to, target
        bad = 1
    }
}
{
    file = $0
    lineno = 0
    cfg_test = 0
    while ((getline text < file) > 0) {
        lineno++
        # A test module (by convention at the end of its file) may use anything.
        if (cfg_test && text ~ /^(pub(\(crate\))? )?mod [a-z_]+/) break
        cfg_test = (text ~ /^#\[cfg\(.*test.*\)\]/)
        stripped = text
        sub(/^[ \t]+/, "", stripped)
        if (stripped ~ /^\/\//) continue
        sub(/\/\/.*$/, "", stripped)
        while (match(stripped, /(crate|super)::([A-Za-z_0-9]+::)*([A-Za-z_0-9]+|\{)/)) {
            path = substr(stripped, RSTART, RLENGTH)
            stripped = substr(stripped, RSTART + RLENGTH)
            # A group of names (`super::{a, b}`) is checked as the module it is taken from.
            sub(/::\{$/, "", path)
            check(file, lineno, path)
        }
    }
    close(file)
}
END {
    if (bad) { print "layering check failed"; exit 1 }
    print "ok: every module imports only the layers beneath it"
}
'
