#!/usr/bin/env python3
"""Regenerates crates/dao-apiserver/src/proto_schema.txt: the protobuf wire schema of the
Kubernetes API types (message names, field numbers, wire types, JSON names).

Field numbers and types come from the `k8s-pb` crate's generated prost structs; JSON names
come from the `k8s-openapi` crate (prost's snake_case names lose acronyms such as `podIP`).
Both crates must be in the local cargo registry (`cargo fetch` of a workspace that depends on
them, or `cargo search`/`cargo download` them). Usage:

    tools/gen_proto_schema.py ~/.cargo/registry/src/*/k8s-pb-0.9.0 \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0 > crates/dao-apiserver/src/proto_schema.txt

Output format, one record per line:
    V <apiVersion> <module>          a module holding the types of one group-version
    M <module>.<Message>             a message; its fields follow
    F <tag> <jsonName> <kind> [<valueKind>] [<module.Message>]
jsonName `...` marks a Go struct embedded inline: its fields are the parent's in JSON.
kind is one of string, bytes, bool, int32, int64, double, message, map; repeated fields
prefix it with `*`. For maps the value kind follows (string, bytes or message).
"""
import os
import re
import sys
from collections import defaultdict

pb_root, openapi_root = sys.argv[1], sys.argv[2]
pb_src = os.path.join(pb_root, "src")


def norm(name):
    return name.replace("r#", "").replace("_", "").lower()


# JSON field names, by normalized name. Collisions are reported and resolved per file below.
json_names = defaultdict(set)
for dirpath, _, files in os.walk(os.path.join(openapi_root, "src", "v1_33")):
    for f in files:
        if not f.endswith(".rs"):
            continue
        for m in re.finditer(r'"([A-Za-z0-9$_-]+)" => Field::Key_(\w+)', open(os.path.join(dirpath, f)).read()):
            json_names[norm(m.group(2))].add(m.group(1))


def openapi_fields(module, message):
    """JSON names of k8s-openapi's type for a k8s-pb message, by normalized Rust name."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", message).lower()
    path = os.path.join(openapi_root, "src", "v1_33", *module.split("."), snake + ".rs")
    if not os.path.exists(path):
        return None
    return {norm(m.group(2)): m.group(1)
            for m in re.finditer(r'"([A-Za-z0-9$_-]+)" => Field::Key_(\w+)', open(path).read())}


def pb_fields(qualified):
    """The Rust field names of a k8s-pb message, by its module-qualified name."""
    module, message = qualified.rsplit(".", 1)
    path = os.path.join(pb_src, *module.split("."), "mod.rs")
    m = re.search(r"pub struct " + message + r" \{(\}|.*?\n\})", open(path).read(), re.S)
    return re.findall(r"#\[prost\([^\]]*\)\]\s*pub ([\w#]+):", m.group(1)) if m else []


def json_name(field):
    cands = json_names.get(norm(field))
    if cands and len(cands) == 1:
        return next(iter(cands))
    if cands:
        # Prefer the spelling that camel-cases prost's snake name (e.g. `type`).
        camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field.replace("r#", ""))
        if camel in cands:
            return camel
        sys.stderr.write(f"ambiguous JSON name for {field}: {sorted(cands)}\n")
        return sorted(cands)[0]
    # Types k8s-openapi does not model (runtime.Unknown, meta's protobuf helpers): camelCase.
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field.replace("r#", ""))


def resolve(module, rust_type):
    """Module-qualified message name of a prost field type written relative to `module`."""
    t = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        if t.startswith(wrapper):
            t = t[len(wrapper):-1].rstrip(",")
    parts = t.split("::")
    mod = module.split(".")
    while parts and parts[0] == "super":
        mod = mod[:-1]
        parts = parts[1:]
    return ".".join(mod + parts)


def type_at(text, i):
    """The field type starting at text[i], up to the comma that ends it (outside `<...>`)."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return re.sub(r"\s+", "", text[i:j])
    raise ValueError("unterminated field type")


out = []
for dirpath, _, files in sorted(os.walk(pb_src)):
    if "mod.rs" not in files:
        continue
    rel = os.path.relpath(dirpath, pb_src)
    if rel == "." or rel.startswith("metrics") or "testapigroup" in rel:
        continue
    module = rel.replace(os.sep, ".")
    text = open(os.path.join(dirpath, "mod.rs")).read()
    versions = set(re.findall(r'const API_VERSION: &\'static str = "([^"]+)";', text))
    for v in sorted(versions):
        out.append(f"V {v} {module}")
    for sm in re.finditer(r"pub struct (\w+) \{(\}|.*?\n\})", text, re.S):
        name, body = sm.group(1), sm.group(2)
        fields = []
        # An attribute, then doc comments or other attributes, then `pub name: Type,` (maybe multi-line).
        for fm in re.finditer(r"#\[prost\(([^\]]*)\)\]\s*pub ([\w#]+):", body):
            attr, fname = fm.group(1), fm.group(2)
            ftype = type_at(body, fm.end())
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            kind = attr.split(",")[0].strip()
            repeated = ", repeated" in attr
            known = openapi_fields(module, name)
            if known is not None and norm(fname) in known:
                jn = known[norm(fname)]
            elif known is not None and kind == "message" and not repeated and any(
                norm(f) in known for f in pb_fields(resolve(module, ftype))
            ):
                # A Go struct embedded with `json:",inline"`: its fields join the parent's.
                jn = "..."
            else:
                jn = json_name(fname)
            if kind.startswith("btree_map") or kind.startswith("map"):
                value_kind = re.search(r'map = "string, (\w+)"', attr).group(1)
                rec = f"F {tag} {jn} map {value_kind}"
                if value_kind == "message":
                    inner = ftype.split(",", 1)[1][:-1].rstrip(",")
                    rec += " " + resolve(module, inner)
            elif kind == "message":
                rec = f"F {tag} {jn} {'*' if repeated else ''}message {resolve(module, ftype)}"
            else:
                kind = "bytes" if kind.startswith("bytes") else kind
                rec = f"F {tag} {jn} {'*' if repeated else ''}{kind}"
            fields.append((int(tag), rec))
        out.append(f"M {module}.{name}")
        out.extend(rec for _, rec in sorted(fields))
print("# Generated by tools/gen_proto_schema.py from k8s-pb 0.9.0 and k8s-openapi 0.29.0; do not edit.")
print("\n".join(out))
