#!/usr/bin/env bash
# openapi_routes.sh - docs/api/openapi.yaml describes exactly the routes qesd
# serves. `qesd routes --json` prints every route of the code (method,
# pattern, scopes, name); the spec must have the same operations, and each
# operation's x-qes-scope must equal the route's scopes and its operationId
# the route's name. The test fails naming every route that is in the code and
# not in the spec, in the spec and not in the code, and every mismatch.
#
# It also checks the spec's structure: OpenAPI 3.1.x, no duplicate YAML keys,
# every $ref resolves, every operation has responses and a valid
# x-qes-scope, public operations say `security: []`, authenticated ones
# answer 401/403/429, every response carries X-Request-Id, every 429 carries
# Retry-After, path parameters are declared, and every JSON request body is
# closed (additionalProperties: false), because qesd refuses unknown fields.
#
# QES_OPENAPI_SPEC overrides the spec path (to check a draft).
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
SPEC=${QES_OPENAPI_SPEC:-$QES_SOURCE_DIR/docs/api/openapi.yaml}
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
[ -f "$SPEC" ] || fail "no OpenAPI spec at $SPEC"
python3 -c 'import yaml' 2>/dev/null || fail "python3-yaml is needed (scripts/deps.sh installs it)"

"$QESD" routes --json > "$T/routes.json" 2> "$T/routes.err" ||
    { cat "$T/routes.err" >&2; fail "qesd routes --json failed"; }
ok "qesd routes --json printed $(grep -c '"pattern"' "$T/routes.json") routes"

python3 - "$SPEC" "$T/routes.json" <<'EOF' || fail "docs/api/openapi.yaml and the code disagree (see above)"
import json
import re
import sys

import yaml

spec_path, routes_path = sys.argv[1], sys.argv[2]
problems = []


def bad(msg):
    problems.append(msg)


# --- YAML without duplicate keys (PyYAML keeps the last one silently) -------
class StrictLoader(yaml.SafeLoader):
    pass


def construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)

with open(spec_path, encoding="utf-8") as f:
    try:
        spec = yaml.load(f, Loader=StrictLoader)
    except yaml.YAMLError as e:
        print("FAIL: %s is not valid YAML: %s" % (spec_path, e))
        sys.exit(1)
if not isinstance(spec, dict):
    print("FAIL: the spec is not a mapping")
    sys.exit(1)

# --- structure -------------------------------------------------------------
if not re.fullmatch(r"3\.1\.\d+", str(spec.get("openapi", ""))):
    bad("openapi is %r, expected 3.1.x" % spec.get("openapi"))
info = spec.get("info") or {}
for k in ("title", "version"):
    if not isinstance(info.get(k), str) or not info.get(k):
        bad("info.%s is missing" % k)
paths = spec.get("paths")
if not isinstance(paths, dict) or not paths:
    print("FAIL: the spec has no paths")
    sys.exit(1)
components = spec.get("components") or {}
schemes = components.get("securitySchemes") or {}


def pointer(ref):
    """Resolve a local $ref ("#/a/b"); None when it does not resolve."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def walk_refs(node, where):
    if isinstance(node, dict):
        if "$ref" in node and pointer(node["$ref"]) is None:
            bad("%s: $ref %r does not resolve (only local #/... refs are allowed)"
                % (where, node["$ref"]))
        for k, v in node.items():
            walk_refs(v, "%s/%s" % (where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(v, "%s/%d" % (where, i))


walk_refs(spec, "#")


def deref(node, depth=0):
    while isinstance(node, dict) and "$ref" in node and depth < 32:
        node = pointer(node["$ref"])
        depth += 1
    return node if node is not None else {}


def check_security_list(sec, where):
    if not isinstance(sec, list):
        bad("%s: security must be a list" % where)
        return
    for req in sec:
        for name in (req or {}):
            if name not in schemes:
                bad("%s: security names unknown scheme %r" % (where, name))


if "security" in spec:
    check_security_list(spec["security"], "security")
global_auth = bool(spec.get("security"))

SCOPES = {"sign", "devices", "diagnostics", "audit", "admin", "none"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
STATUS = re.compile(r"[1-5](\d\d|XX)")


def closed(schema, where, seen=None):
    """A JSON request body schema must refuse unknown members, nested objects too."""
    seen = seen if seen is not None else set()
    s = deref(schema)
    if id(s) in seen or not isinstance(s, dict):
        return
    seen.add(id(s))
    is_object = s.get("type") == "object" or "properties" in s
    if is_object and s.get("additionalProperties") is not False \
            and s.get("unevaluatedProperties") is not False:
        bad("%s: request body object without additionalProperties: false" % where)
    for name, sub in (s.get("properties") or {}).items():
        closed(sub, "%s.%s" % (where, name), seen)
    if "items" in s:
        closed(s["items"], where + "[]", seen)
    for k in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(s.get(k) or []):
            closed(sub, "%s(%s %d)" % (where, k, i), seen)


spec_ops = {}   # (METHOD, normalised path) -> facts
op_ids = {}
for path, item in paths.items():
    if not isinstance(path, str) or not path.startswith("/"):
        bad("path %r does not start with /" % (path,))
        continue
    if not isinstance(item, dict):
        bad("%s: not a mapping" % path)
        continue
    template = re.findall(r"\{([^}]+)\}", path)
    shared = item.get("parameters") or []
    for method in METHODS:
        if method not in item:
            continue
        op = item[method]
        where = "%s %s" % (method.upper(), path)
        if not isinstance(op, dict):
            bad("%s: not a mapping" % where)
            continue
        opid = op.get("operationId")
        if not isinstance(opid, str) or not opid:
            bad("%s: no operationId" % where)
        elif opid in op_ids:
            bad("%s: operationId %r also used by %s" % (where, opid, op_ids[opid]))
        else:
            op_ids[opid] = where
        scope = op.get("x-qes-scope")
        scope_set = set(scope) if isinstance(scope, list) else {scope}
        if not scope_set or not scope_set <= SCOPES or \
                ("none" in scope_set and len(scope_set) > 1):
            bad("%s: x-qes-scope %r is not one of %s" % (where, scope, sorted(SCOPES)))
        public = scope_set == {"none"}
        if "security" in op:
            check_security_list(op["security"], where)
        sec = op.get("security", spec.get("security"))
        if public and sec not in ([], [{}]):
            bad("%s: x-qes-scope none but the operation is not `security: []`" % where)
        if not public and not sec:
            bad("%s: needs scope %s but has no security requirement" % (where, scope))

        # parameters: every {name} in the path is declared, and nothing else
        declared = {}
        for p in list(shared) + list(op.get("parameters") or []):
            p = deref(p)
            if not isinstance(p, dict) or "name" not in p or "in" not in p:
                bad("%s: a parameter without name or in" % where)
                continue
            declared[(p["in"], p["name"])] = p
        for name in template:
            p = declared.get(("path", name))
            if p is None:
                bad("%s: path parameter {%s} is not declared" % (where, name))
            elif p.get("required") is not True:
                bad("%s: path parameter {%s} must be required: true" % (where, name))
        for (where_in, name) in declared:
            if where_in == "path" and name not in template:
                bad("%s: declares path parameter %r that the path does not have"
                    % (where, name))

        # responses
        responses = op.get("responses")
        if not isinstance(responses, dict) or not responses:
            bad("%s: no responses" % where)
            responses = {}
        for code, resp in responses.items():
            code = str(code)
            if code != "default" and not STATUS.fullmatch(code):
                bad("%s: response key %r is not a status code" % (where, code))
            r = deref(resp)
            if not isinstance(r.get("description"), str):
                bad("%s %s: response without description" % (where, code))
            headers = {k.lower() for k in (r.get("headers") or {})}
            if "x-request-id" not in headers:
                bad("%s %s: response without the X-Request-Id header" % (where, code))
            if code == "429" and "retry-after" not in headers:
                bad("%s 429: response without the Retry-After header" % where)
            for ctype, media in (r.get("content") or {}).items():
                if ctype.startswith("application/problem+json"):
                    ps = deref((media or {}).get("schema"))
                    if "type" not in (ps.get("properties") or {}):
                        bad("%s %s: problem response whose schema is not Problem"
                            % (where, code))
        if not public:
            for code in ("401", "403", "429"):
                if code not in {str(c) for c in responses}:
                    bad("%s: authenticated operation without a %s response" % (where, code))
        if template and "404" not in {str(c) for c in responses}:
            bad("%s: operation on an object id without a 404 response" % where)

        # request body
        if "requestBody" in op:
            rb = deref(op["requestBody"])
            content = rb.get("content") or {}
            if not content:
                bad("%s: requestBody without content" % where)
            for ctype, media in content.items():
                if ctype.split(";")[0].strip() == "application/json":
                    closed((media or {}).get("schema"), where + " body")

        norm = re.sub(r"\{[^}]+\}", "{}", path)
        spec_ops[(method.upper(), norm)] = {
            "path": path, "params": template, "scope": scope_set,
            "operationId": opid,
        }

# the problem schema and the request id header the whole API relies on
problem = (components.get("schemas") or {}).get("Problem") or {}
for member in ("type", "title", "status", "detail", "instance", "request_id"):
    if member not in (problem.get("properties") or {}):
        bad("components.schemas.Problem lacks the member %r" % member)
if "X-Request-Id" not in (components.get("headers") or {}):
    bad("components.headers has no X-Request-Id")

# --- the code's routes -------------------------------------------------------
with open(routes_path, encoding="utf-8") as f:
    routes = json.load(f)
if isinstance(routes, dict):
    routes = routes.get("routes")
if not isinstance(routes, list) or not routes:
    print("FAIL: qesd routes --json printed no route list")
    sys.exit(1)
code_ops = {}
for r in routes:
    try:
        method, pattern, name = r["method"].upper(), r["pattern"], r["name"]
        scopes = r["scopes"]
    except (KeyError, TypeError, AttributeError):
        bad("qesd routes --json: malformed entry %r" % (r,))
        continue
    if isinstance(scopes, str):
        scopes = [s for s in re.split(r"[ ,]+", scopes) if s and s != "-"]
    scope_set = set(scopes) or {"none"}
    norm = re.sub(r"\{[^}]+\}", "{}", pattern)
    code_ops[(method, norm)] = {
        "path": pattern, "params": re.findall(r"\{([^}]+)\}", pattern),
        "scope": scope_set, "name": name,
    }
if ("GET", "/healthz") not in code_ops:
    bad("qesd routes --json does not list GET /healthz: is the output complete?")

for key in sorted(set(code_ops) - set(spec_ops)):
    c = code_ops[key]
    bad("in the code, not in the spec: %s %s (scope %s, name %s)"
        % (key[0], c["path"], ",".join(sorted(c["scope"])), c["name"]))
for key in sorted(set(spec_ops) - set(code_ops)):
    s = spec_ops[key]
    bad("in the spec, not in the code: %s %s (operationId %s)"
        % (key[0], s["path"], s["operationId"]))
for key in sorted(set(spec_ops) & set(code_ops)):
    s, c = spec_ops[key], code_ops[key]
    where = "%s %s" % (key[0], c["path"])
    if s["scope"] != c["scope"]:
        bad("scope mismatch: %s needs %s in the code, x-qes-scope says %s"
            % (where, ",".join(sorted(c["scope"])), ",".join(sorted(s["scope"]))))
    if s["operationId"] != c["name"]:
        bad("name mismatch: %s is route %r in the code, operationId %r in the spec"
            % (where, c["name"], s["operationId"]))
    if s["params"] != c["params"]:
        bad("parameter names differ: %s is %s in the spec" % (where, s["path"]))

if problems:
    for p in problems:
        print("FAIL: " + p)
    print("%d problem(s) in %s against `qesd routes --json`" % (len(problems), spec_path))
    sys.exit(1)
print("spec: %d operations, code: %d routes, all matched with their scopes"
      % (len(spec_ops), len(code_ops)))
EOF
ok "docs/api/openapi.yaml: valid OpenAPI 3.1 structure, every \$ref resolves"
ok "docs/api/openapi.yaml and qesd routes --json list the same routes with the same scopes"
