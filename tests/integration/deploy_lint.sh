#!/usr/bin/env bash
# deploy_lint.sh - the deployment files in deploy/ checked against qesd as
# built (issue 6, "Deployment"). No image is built and no cluster is used
# (CI has neither Docker/Podman nor Kubernetes); what can be checked here is:
#   - yamllint (deploy/.yamllint, strict) on every YAML file;
#   - the Kubernetes manifests (the Python check below, python3-yaml):
#     every object has apiVersion, kind and metadata (name, namespace); the
#     kustomization lists them all; the Deployment runs >= 2 replicas as
#     non-root with a read-only root file system, no privilege escalation,
#     no capabilities, resources set; its probes ask /readyz and /healthz
#     (routes `qesd routes --json` lists) over HTTPS on the port of
#     `listen` in the ConfigMap; its grace period exceeds the ConfigMap's
#     drain_timeout_s plus the preStop pause; every Secret, ConfigMap, port
#     name and selector it refers to exists; the Secrets are templates; the
#     HPA keeps >= 2 replicas; the Ingress outlasts agent_dead_after_s;
#     the ConfigMap signs documents (document_key_file, document_max_bytes,
#     chain_file, tsa_url, tsa_ca_file in mounted volumes), the init
#     container installs every secret file mode 0600 from a Secret that has
#     it, and the NetworkPolicy lets qesd reach the internet on tsa_url's
#     port and on 80/443 (the TSA, OCSP responders, CRL distribution points);
#     the Ingress passes the largest document request and does not spool it;
#   - the Containerfile: two stages on debian:12-slim, a non-root USER, no
#     HEALTHCHECK, EXPOSE of the listen port, the ENTRYPOINT's config path
#     where the Deployment mounts the ConfigMap, and its runtime package
#     list provides every library `ldd qesd` loads (dpkg -S, with the
#     packages' dependencies);
#   - qesd itself accepts both configuration files (the ConfigMap's and the
#     systemd example): it starts on each (store, secret and certificate
#     paths overridden: a document key, a chain bundle and a TSA anchor from
#     the test PKI), logs document signing on with them, /healthz and
#     /readyz answer 200, SIGTERM ends it with 0; the Secret templates'
#     placeholders (pepper, document key) and a document key of mode 0644 are
#     refused with exit 3, the trust ConfigMap's placeholder chain too;
#   - systemd-analyze verify on the units, when systemd-analyze exists; the
#     unit's TimeoutStopSec exceeds drain_timeout_s of its example config.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
. "$(dirname -- "$0")/../qesd.sh"
D=$QES_SOURCE_DIR/deploy
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
for tool in yamllint python3 curl openssl ldd dpkg-query; do
    command -v "$tool" >/dev/null || fail "$tool is needed (scripts/deps.sh)"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3-yaml is needed (scripts/deps.sh)"

# ---------------------------------------------------------------------------
yamllint -c "$D/.yamllint" -s "$D" > "$T/yamllint.out" 2>&1 ||
    { cat "$T/yamllint.out" >&2; fail "yamllint finds problems in deploy/"; }
ok "yamllint (strict) passes on deploy/ ($(find "$D" -name '*.yaml' | wc -l) files)"

"$QESD" routes --json > "$T/routes.json" || fail "qesd routes --json"

# ---------------------------------------------------------------------------
# The manifests.
cat > "$T/k8s.py" <<'EOF'
import glob, json, os, re, sys
import yaml

kdir, routes_file = sys.argv[1], sys.argv[2]
routes = {(r["method"], r["pattern"]) for r in json.load(open(routes_file))}
errors = []
def err(msg):
    errors.append(msg)

objs = {}
files = sorted(glob.glob(os.path.join(kdir, "*.yaml")))
kustomization = None
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        if doc is None:
            continue
        name = os.path.basename(f)
        if doc.get("kind") == "Kustomization":
            kustomization = (name, doc)
            continue
        for k in ("apiVersion", "kind", "metadata"):
            if k not in doc:
                err("%s: no %s" % (name, k))
        md = doc.get("metadata") or {}
        if not md.get("name"):
            err("%s: no metadata.name" % name)
        if doc.get("kind") != "Namespace" and md.get("namespace") != "qesd":
            err("%s: %s is not in namespace qesd" % (name, doc.get("kind")))
        objs[(doc.get("kind"), md.get("name"))] = doc

if kustomization is None:
    err("no kustomization.yaml")
else:
    listed = set(kustomization[1].get("resources", []))
    present = {os.path.basename(f) for f in files} - {kustomization[0]}
    if listed != present:
        err("kustomization resources %s differ from the files %s" %
            (sorted(listed), sorted(present)))

def one(kind, name="qesd"):
    o = objs.get((kind, name))
    if o is None:
        err("no %s %s" % (kind, name))
        return {}
    return o

# qesd.conf in the ConfigMap: key = value lines, comments at line start
cm = one("ConfigMap", "qesd-config")
conf = {}
for line in (cm.get("data") or {}).get("qesd.conf", "").splitlines():
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    k, _, v = s.partition("=")
    conf[k.strip()] = v.strip()
for k in ("listen", "tls_cert", "tls_key", "pepper_file", "store",
          "drain_timeout_s", "agent_dead_after_s", "server_name",
          "document_key_file", "document_max_bytes", "chain_file", "tsa_url",
          "tsa_ca_file"):
    if k not in conf:
        err("qesd.conf in the ConfigMap has no %s" % k)
def port_of(v):
    m = re.match(r"^(?:\[[^\]]*\]|[^:]+):(\d+)$", v or "")
    return int(m.group(1)) if m else None
listen_port = port_of(conf.get("listen"))
metrics_port = port_of(conf.get("metrics_listen"))
drain = int(conf.get("drain_timeout_s", "30"))
dead_after = int(conf.get("agent_dead_after_s", "60"))
if not conf.get("store", "").startswith("postgres:"):
    err("the replicas must share a postgres: store, not %r" % conf.get("store"))

dep = one("Deployment")
spec = dep.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
if spec.get("replicas", 1) < 2:
    err("Deployment: replicas %s < 2" % spec.get("replicas"))
sel = spec.get("selector", {}).get("matchLabels", {})
if not sel or any(labels.get(k) != v for k, v in sel.items()):
    err("Deployment: selector %s does not match the pod labels %s" % (sel, labels))
psc = pod.get("securityContext", {})
if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
    err("Deployment: the pod must run as non-root with a runAsUser other than 0")
if pod.get("automountServiceAccountToken") is not False:
    err("Deployment: automountServiceAccountToken must be false")
containers = pod.get("containers", [])
main = [c for c in containers if c.get("name") == "qesd"]
if len(main) != 1:
    err("Deployment: no container named qesd")
    main = [{}]
main = main[0]
for c in containers + pod.get("initContainers", []):
    sc = c.get("securityContext", {})
    n = c.get("name")
    if sc.get("allowPrivilegeEscalation") is not False:
        err("container %s: allowPrivilegeEscalation must be false" % n)
    if sc.get("readOnlyRootFilesystem") is not True:
        err("container %s: readOnlyRootFilesystem must be true" % n)
    if sc.get("runAsUser", psc.get("runAsUser")) in (0, None):
        err("container %s runs as root" % n)
    if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
        err("container %s: capabilities must drop ALL" % n)
    res = c.get("resources", {})
    if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory") \
            or not res.get("limits", {}).get("memory"):
        err("container %s: cpu and memory requests and a memory limit are needed" % n)
ports = {p.get("name"): p.get("containerPort") for p in main.get("ports", [])}
if listen_port not in ports.values():
    err("Deployment: no containerPort for listen port %s" % listen_port)
if metrics_port is not None and metrics_port not in ports.values():
    err("Deployment: no containerPort for metrics_listen port %s" % metrics_port)
def probe(kind, path):
    p = main.get(kind)
    if not p:
        err("Deployment: no %s" % kind)
        return
    g = p.get("httpGet", {})
    if g.get("path") != path:
        err("%s asks %s, expected %s" % (kind, g.get("path"), path))
    if ("GET", g.get("path")) not in routes:
        err("%s path %s is not a qesd route" % (kind, g.get("path")))
    if g.get("scheme") != "HTTPS":
        err("%s must use HTTPS (qesd serves TLS only)" % kind)
    port = g.get("port")
    port = ports.get(port, port)
    if port != listen_port:
        err("%s port %s is not the listen port %s" % (kind, port, listen_port))
probe("readinessProbe", "/readyz")
probe("livenessProbe", "/healthz")
if "startupProbe" in main:
    probe("startupProbe", "/healthz")
pre = main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pause = int(pre[-1]) if pre and pre[0].endswith("sleep") else 0
grace = pod.get("terminationGracePeriodSeconds", 30)
if grace <= drain + pause:
    err("terminationGracePeriodSeconds %s must exceed drain_timeout_s %s + preStop %s"
        % (grace, drain, pause))

# references: volumes, env, mounts of the secret and config paths
vols = {v["name"]: v for v in pod.get("volumes", [])}
for v in vols.values():
    if "secret" in v:
        one("Secret", v["secret"]["secretName"])
        if v["secret"].get("defaultMode", 0o644) & 0o007:
            err("secret volume %s is readable by others" % v["name"])
    if "configMap" in v:
        one("ConfigMap", v["configMap"]["name"])
for e in main.get("env", []):
    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
    if ref:
        s = one("Secret", ref["name"])
        if ref["key"] not in (s.get("stringData") or {}):
            err("env %s: secret %s has no key %s" % (e["name"], ref["name"], ref["key"]))
mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
cfg_mount = [p for p, m in mounts.items()
             if vols.get(m["name"], {}).get("configMap", {}).get("name") == "qesd-config"]
if cfg_mount != ["/etc/qesd"]:
    err("the ConfigMap must be mounted at /etc/qesd (the image's --config), not %s" % cfg_mount)
for k in ("tls_cert", "tls_key", "pepper_file", "document_key_file",
          "chain_file", "tsa_ca_file"):
    d = os.path.dirname(conf.get(k, ""))
    if d not in mounts:
        err("%s %s is not in a mounted volume" % (k, conf.get(k)))
    elif mounts[d].get("readOnly") is not True:
        err("the volume of %s must be mounted read-only" % k)

# the secret files qesd checks (mode 0600, owner) come from the init
# container: install -m 0600 SRC DST, SRC a key of a mounted Secret
inits = pod.get("initContainers", [])
installs = {}
for c in inits:
    cmd = " ".join(c.get("command", []) + c.get("args", []))
    imounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    for src, dst in re.findall(r"install -m 0600 (\S+) (\S+)", cmd):
        installs[dst] = (src, imounts.get(os.path.dirname(src)))
for k in ("tls_key", "pepper_file", "document_key_file"):
    path = conf.get(k, "")
    if path not in installs:
        err("no init container installs %s %s mode 0600" % (k, path))
        continue
    src, vol = installs[path]
    sec = (vols.get(vol) or {}).get("secret", {}).get("secretName")
    if sec is None:
        err("%s: %s is not in a mounted Secret volume" % (k, src))
        continue
    if os.path.basename(src) not in (one("Secret", sec).get("stringData") or {}):
        err("%s: Secret %s has no key %s" % (k, sec, os.path.basename(src)))

for (kind, name), o in objs.items():
    if kind == "Secret":
        if "data" in o:
            err("Secret %s has data: templates carry placeholders in stringData only" % name)
        for k, v in (o.get("stringData") or {}).items():
            if "REPLACE" not in v:
                err("Secret %s key %s is not a placeholder" % (name, k))

svc = one("Service")
for p in svc.get("spec", {}).get("ports", []):
    t = p.get("targetPort")
    if t not in ports and t not in ports.values():
        err("Service port %s targets %s, not a container port" % (p.get("name"), t))
if any(labels.get(k) != v for k, v in svc.get("spec", {}).get("selector", {}).items()):
    err("Service selector does not match the pods")

hpa = one("HorizontalPodAutoscaler")
hs = hpa.get("spec", {})
if hs.get("minReplicas", 1) < 2 or hs.get("maxReplicas", 0) < hs.get("minReplicas", 1):
    err("HPA: minReplicas must be >= 2 and <= maxReplicas")
if hs.get("scaleTargetRef", {}).get("name") != dep.get("metadata", {}).get("name"):
    err("HPA scales %s, not the Deployment" % hs.get("scaleTargetRef"))

pdb = one("PodDisruptionBudget")
ps = pdb.get("spec", {})
if any(labels.get(k) != v for k, v in ps.get("selector", {}).get("matchLabels", {}).items()):
    err("PDB selector does not match the pods")
if ps.get("maxUnavailable") not in (1, None) and ps.get("minAvailable") is None:
    err("PDB must keep all but one replica")

np_ = one("NetworkPolicy")
nports = {p.get("port") for r in np_.get("spec", {}).get("ingress", []) for p in r.get("ports", [])}
if listen_port not in nports:
    err("NetworkPolicy does not admit the listen port %s" % listen_port)
# document signing: the TSA (tsa_url's port) and the OCSP responders and
# CRL distribution points (http, 80; https, 443) are outside the cluster
m = re.match(r"^(https?)://(\[[^\]]*\]|[^/:?#]+)(?::(\d+))?", conf.get("tsa_url", ""))
if not m:
    err("tsa_url %r is not an http(s) URL" % conf.get("tsa_url"))
    tsa_port = None
else:
    tsa_port = int(m.group(3) or (443 if m.group(1) == "https" else 80))
internet = set()
for r in np_.get("spec", {}).get("egress", []):
    if any((t.get("ipBlock") or {}).get("cidr") == "0.0.0.0/0" for t in r.get("to", [])):
        internet |= {p.get("port") for p in r.get("ports", []) if p.get("protocol", "TCP") == "TCP"}
for port, what in ((tsa_port, "the TSA (tsa_url)"), (80, "OCSP/CRL over http"),
                   (443, "OCSP/CRL over https")):
    if port is not None and port not in internet:
        err("NetworkPolicy: no egress to the internet on port %s for %s" % (port, what))

ing = one("Ingress")
ann = ing.get("metadata", {}).get("annotations", {})
for a in ("nginx.ingress.kubernetes.io/proxy-read-timeout",
          "nginx.ingress.kubernetes.io/proxy-send-timeout"):
    if int(ann.get(a, "60")) <= dead_after:
        err("Ingress %s must exceed agent_dead_after_s %d" % (a, dead_after))
if ann.get("nginx.ingress.kubernetes.io/backend-protocol") != "HTTPS" and \
        ann.get("nginx.ingress.kubernetes.io/ssl-passthrough") != "true":
    err("Ingress must re-encrypt (backend-protocol HTTPS) or pass TLS through")
# documents: the largest body POST /v1/signatures takes (server.c: JSON is
# the base64 of document_max_bytes plus max_body_bytes) must pass, and not
# be spooled to the controller's disk
def nginx_size(v):
    m = re.match(r"^(\d+)([kKmMgG]?)$", str(v))
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
doc_max = int(conf.get("document_max_bytes", "16777216"))
body_max = int(conf.get("max_body_bytes", "1048576")) + (doc_max + 2) // 3 * 4
ing_body = nginx_size(ann.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m"))
if ing_body is None or (ing_body != 0 and ing_body < body_max):
    err("Ingress proxy-body-size %s is below the largest document request, %d bytes"
        % (ann.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m"), body_max))
if ann.get("nginx.ingress.kubernetes.io/proxy-request-buffering") != "off":
    err("Ingress must not buffer request bodies (documents) on its disk: "
        "proxy-request-buffering off")
hosts = [r.get("host") for r in ing.get("spec", {}).get("rules", [])]
if conf.get("server_name") not in hosts:
    err("server_name %s is not the Ingress host %s" % (conf.get("server_name"), hosts))
for r in ing.get("spec", {}).get("rules", []):
    for p in r.get("http", {}).get("paths", []):
        b = p.get("backend", {}).get("service", {})
        if b.get("name") != svc.get("metadata", {}).get("name"):
            err("Ingress backend %s is not the Service" % b.get("name"))
        if b.get("port", {}).get("name") not in [q.get("name") for q in svc.get("spec", {}).get("ports", [])]:
            err("Ingress backend port %s is not a Service port" % b.get("port"))
        if not "/v1/agent".startswith(p.get("path", "").rstrip("*")):
            err("Ingress path %s does not carry /v1/agent" % p.get("path"))

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
open(os.environ["CONF_OUT"], "w").write(cm["data"]["qesd.conf"])
print("%d objects; listen %s, drain %d s, grace %d s, preStop %d s; "
      "secrets installed by the init container: %s; egress to the internet "
      "on %s (TSA %s)" %
      (len(objs), listen_port, drain, grace, pause,
       " ".join(sorted(os.path.basename(d) for d in installs)),
       "/".join(str(p) for p in sorted(internet)), tsa_port))
EOF
CONF_OUT=$T/k8s-qesd.conf python3 "$T/k8s.py" "$D/kubernetes" "$T/routes.json" > "$T/k8s.out" 2> "$T/k8s.err" ||
    { cat "$T/k8s.err" >&2; fail "the Kubernetes manifests"; }
ok "Kubernetes manifests: $(cat "$T/k8s.out")"

# a broken manifest must be caught: the check can fail
mkdir -p "$T/broken"
cp "$D/kubernetes/"*.yaml "$T/broken/"
sed -i 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 30/; s|path: /readyz|path: /ready|' \
    "$T/broken/deployment.yaml"
# ... an init container that installs the document key elsewhere, and a
# NetworkPolicy without HTTPS to the internet (the TSA)
sed -i 's|^\( *\)/run/qesd/secrets/document.key$|\1/run/qesd/secrets/doc.key|' \
    "$T/broken/deployment.yaml"
sed -i 's/^\( *\)port: 443$/\1port: 4443/' "$T/broken/networkpolicy.yaml"
sed -i 's/proxy-body-size: "23m"/proxy-body-size: "1m"/' "$T/broken/ingress.yaml"
rc=0
CONF_OUT=$T/broken.conf python3 "$T/k8s.py" "$T/broken" "$T/routes.json" > /dev/null 2> "$T/broken.err" || rc=$?
expect_eq "$rc" 1 "the check of a Deployment with a short grace period and a wrong probe path"
expect_contains "$T/broken.err" "terminationGracePeriodSeconds 30 must exceed"
expect_contains "$T/broken.err" "readinessProbe path /ready is not a qesd route"
expect_contains "$T/broken.err" "no init container installs document_key_file /run/qesd/secrets/document.key"
expect_contains "$T/broken.err" "no egress to the internet on port 443 for the TSA"
expect_contains "$T/broken.err" "Ingress proxy-body-size 1m is below the largest document request"
ok "a short grace period, a wrong probe path, a document key not installed, no TSA egress and an Ingress body limit below a document are caught"

# ---------------------------------------------------------------------------
# The Containerfile.
CF=$D/container/Containerfile
python3 - "$CF" "$T/k8s-qesd.conf" > "$T/cf.out" 2> "$T/cf.err" <<'EOF' || { cat "$T/cf.err" >&2; fail "the Containerfile"; }
import re, sys
text = open(sys.argv[1]).read()
logical = re.sub(r"\\\n", " ", text)
lines = [l.strip() for l in logical.splitlines() if l.strip() and not l.strip().startswith("#")]
froms = [l for l in lines if l.upper().startswith("FROM ")]
errors = []
if len(froms) != 2 or not all(f.split()[1] == "debian:12-slim" for f in froms):
    errors.append("expected two stages FROM debian:12-slim: %s" % froms)
runtime = lines[lines.index(froms[-1]):] if froms else []
users = [l.split()[1] for l in runtime if l.upper().startswith("USER ")]
if not users or users[-1].split(":")[0] in ("0", "root"):
    errors.append("the runtime stage must end on a non-root USER: %s" % users)
if any(l.upper().startswith("HEALTHCHECK") for l in lines):
    errors.append("no HEALTHCHECK: the orchestrator probes /healthz and /readyz")
port = int(re.search(r"^listen = .*:(\d+)$", open(sys.argv[2]).read(), re.M).group(1))
exposed = {int(p.split("/")[0]) for l in runtime if l.upper().startswith("EXPOSE ")
           for p in l.split()[1:]}
if port not in exposed:
    errors.append("EXPOSE %s lacks the listen port %d" % (sorted(exposed), port))
ep = [l for l in runtime if l.upper().startswith("ENTRYPOINT ")]
if not ep or '"serve", "--config", "/etc/qesd/qesd.conf"' not in ep[-1]:
    errors.append("ENTRYPOINT must be qesd serve --config /etc/qesd/qesd.conf: %s" % ep)
if any("-dev" in w for l in runtime if "apt-get install" in l for w in l.split()):
    errors.append("the runtime stage installs -dev packages")
pk = []
for l in runtime:
    if "apt-get install" in l:
        words = l.split("apt-get install", 1)[1].split("&&")[0].split()
        pk += [w for w in words if not w.startswith("-")]
if not pk:
    errors.append("no apt-get install in the runtime stage")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(" ".join(pk))
EOF
RUNTIME_PKGS=$(cat "$T/cf.out")
ok "Containerfile: two debian:12-slim stages, non-root USER, no HEALTHCHECK, EXPOSE and ENTRYPOINT match; runtime packages: $RUNTIME_PKGS"

# Every library qesd loads comes from a listed package or one of their
# dependencies (the image is Debian 12: the names are checked on Debian 12).
if grep -q '^VERSION_ID="12"' /etc/os-release 2>/dev/null; then
    python3 - "$QESD" "${QES_SANITIZE:-0}" $RUNTIME_PKGS > "$T/ldd.out" 2> "$T/ldd.err" <<'EOF' ||
import os, re, subprocess, sys
qesd, sanitize, listed = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
out = subprocess.run(["ldd", qesd], capture_output=True, text=True, check=True).stdout
libs = []
for line in out.splitlines():
    m = re.search(r"=>\s+(/\S+)", line)
    if m:
        libs.append(m.group(1))
    elif "not found" in line:
        sys.exit("ldd: %s" % line.strip())
def owner(path):
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        if p.startswith("/usr/"):
            cands.append(p[4:])
        else:
            cands.append("/usr" + p)
    for p in cands:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None
def depends(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", pkg],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return []
    names = []
    for alt in r.stdout.split(","):
        for a in alt.split("|"):
            a = re.sub(r"\(.*?\)", "", a).strip().split(":")[0]
            if a:
                names.append(a)
    return names
closure, todo = set(), list(listed) + ["libc6"]   # libc6: the base image
while todo:
    p = todo.pop()
    if p in closure:
        continue
    closure.add(p)
    todo += depends(p)
# the sanitizers' runtimes are in the ASan/UBSan test build only
san = ("libasan", "libubsan", "liblsan", "libtsan", "libgcc-s1", "libstdc++6")
missing, seen = [], []
for lib in libs:
    pkg = owner(lib)
    if pkg is None:
        missing.append("%s (no package owns it)" % lib)
        continue
    if sanitize and pkg.startswith(san):
        continue
    seen.append(pkg)
    if pkg not in closure:
        missing.append("%s from %s" % (lib, pkg))
if missing:
    sys.exit("libraries qesd needs that the runtime stage lacks: " + "; ".join(missing))
unused = [p for p in listed if p not in seen and p != "ca-certificates"]
print("%d libraries from %s%s" % (len(libs), " ".join(sorted(set(seen))),
      "; listed, not loaded by this build: " + " ".join(unused) if unused else ""))
EOF
        { cat "$T/ldd.err" >&2; fail "the Containerfile's runtime packages"; }
    ok "ldd qesd: $(cat "$T/ldd.out")"
else
    ok "ldd check skipped: this host is not Debian 12, the image's base"
fi

# ---------------------------------------------------------------------------
# qesd accepts both configuration files as they are (only the paths of the
# store and the secrets, the ports and the NATS server's address are
# overridden).
qesd_tls_files "$T"
# document signing: a key, the signers' chain (issuing CA and root of the
# test PKI) and the TSA's anchor, in place of the Secret and the trust
# ConfigMap (or the files in /etc/qesd)
openssl rand -hex 32 > "$T/document.key"
chmod 600 "$T/document.key"
cat "$QES_PKI/issuing-ca.pem" "$QES_PKI/root-ca.pem" > "$T/signer-cas.pem"
cp "$QES_PKI/tsa-chain.pem" "$T/tsa-anchors.pem"
doc_env=(QESD_DOCUMENT_KEY_FILE="$T/document.key" QESD_CHAIN_FILE="$T/signer-cas.pem"
    QESD_TSA_CA_FILE="$T/tsa-anchors.pem")
conf_value() {   # conf_value FILE KEY: the value of an uncommented key = value
    awk -F' *= *' -v k="$2" '{ sub(/^[ \t]+/, "") } $1 == k { print $2 }' "$1"
}
mkdir -p "$T/resp"
# the ConfigMap's replicas talk through NATS: a private server stands in
. "$QES_SOURCE_DIR/tests/nats.sh"
start_nats
for conf in "$T/k8s-qesd.conf" "$D/systemd/qesd.conf"; do
    case $conf in
    "$T"/*) name=configmap-qesd.conf bus=nats:$NATS_URL ;;
    *) name=systemd-qesd.conf bus=local ;;
    esac
    # both sign documents: the key, chain and TSA keys are there (only
    # their file paths are overridden; tsa_url and document_max_bytes not)
    for k in document_key_file document_max_bytes chain_file tsa_url tsa_ca_file; do
        [ -n "$(conf_value "$conf" "$k")" ] || fail "$name has no $k"
    done
    tsa_url=$(conf_value "$conf" tsa_url)
    doc_max=$(conf_value "$conf" document_max_bytes)
    mport=$(qes_free_port)
    start_qesd "$conf" "$T/$name.log" QESD_LISTEN=127.0.0.1:0 \
        QESD_METRICS_LISTEN=127.0.0.1:$mport QESD_STORE=sqlite:$T/$name.db \
        QESD_TLS_CERT="$T/server.pem" QESD_TLS_KEY="$T/server.key" \
        QESD_PEPPER_FILE="$T/pepper" QESD_SERVER_NAME=localhost QESD_BUS="$bus" \
        "${doc_env[@]}"
    call - GET /readyz
    expect_eq "$CODE" 200 "GET /readyz with $name"
    call - GET /healthz
    expect_eq "$CODE" 200 "GET /healthz with $name"
    # document signing is on, with the whole chain and the TSA of the file
    grep '"msg":"document signing on"' "$T/$name.log" > "$T/$name.docs" ||
        { cat "$T/$name.log" >&2; fail "qesd with $name does not sign documents"; }
    expect_contains "$T/$name.docs" "\"document_max_bytes\":$doc_max,"
    expect_contains "$T/$name.docs" '"chain_certificates":2,'
    expect_contains "$T/$name.docs" "\"tsa_url\":\"$tsa_url\""
    stop_qesd 40
    expect_not_contains "$T/$name.log" "$(cat "$T/document.key")"
    ok "qesd starts with $name as it is; document signing on (${doc_max} bytes, chain of 2, TSA $tsa_url); /readyz and /healthz answer 200; SIGTERM exits 0"
done

# the pepper placeholder of secret-pepper.yaml must not start a server
python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["stringData"]["pepper"], end="")' \
    "$D/kubernetes/secret-pepper.yaml" > "$T/placeholder-pepper"
chmod 600 "$T/placeholder-pepper"
rc=0
QESD_PEPPER_FILE=$T/placeholder-pepper QESD_TLS_CERT=$T/server.pem QESD_TLS_KEY=$T/server.key \
    QESD_STORE=sqlite:$T/placeholder.db QESD_LISTEN=127.0.0.1:0 QESD_METRICS_LISTEN=127.0.0.1:$(qes_free_port) \
    timeout 20 "$QESD" serve --config "$T/k8s-qesd.conf" > /dev/null 2> "$T/placeholder.err" || rc=$?
expect_eq "$rc" 3 "qesd with the template's placeholder pepper"
expect_contains "$T/placeholder.err" "at least 32 are needed"
ok "the template's placeholder pepper is refused (exit 3)"

# ... nor the document key placeholder of secret-document-key.yaml, nor a
# real key readable by others (both before the store is touched: exit 3,
# which qesd.service does not restart)
python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["stringData"]["document.key"], end="")' \
    "$D/kubernetes/secret-document-key.yaml" > "$T/placeholder-document.key"
chmod 600 "$T/placeholder-document.key"
cp "$T/document.key" "$T/open-document.key"
chmod 644 "$T/open-document.key"
for key in placeholder-document.key open-document.key; do
    rc=0
    env QESD_PEPPER_FILE="$T/pepper" QESD_TLS_CERT="$T/server.pem" QESD_TLS_KEY="$T/server.key" \
        QESD_STORE=sqlite:$T/$key.db QESD_LISTEN=127.0.0.1:0 \
        QESD_METRICS_LISTEN=127.0.0.1:$(qes_free_port) "${doc_env[@]}" \
        QESD_DOCUMENT_KEY_FILE="$T/$key" \
        timeout 20 "$QESD" serve --config "$T/k8s-qesd.conf" > /dev/null 2> "$T/$key.err" || rc=$?
    expect_eq "$rc" 3 "qesd with $key"
    expect_contains "$T/$key.err" '"msg":"configuration error"'
    [ ! -e "$T/$key.db" ] || fail "qesd with $key opened the store"
done
expect_contains "$T/placeholder-document.key.err" "must hold 32 random bytes or 64 hex digits"
expect_contains "$T/open-document.key.err" "mode 0600 (is 0644)"
expect_not_contains "$T/open-document.key.err" "$(cat "$T/document.key")"
ok "the template's placeholder document key and a key of mode 0644 are refused (exit 3, the store untouched)"

# ... nor the placeholder chain or TSA anchors of configmap-trust.yaml:
# both are configuration errors (exit 3, the store untouched), not jobs
# failing later
for key in signer-cas.pem tsa-anchors.pem; do
    python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"][sys.argv[2]], end="")' \
        "$D/kubernetes/configmap-trust.yaml" "$key" > "$T/placeholder-$key"
    case $key in
        signer-cas.pem) var=QESD_CHAIN_FILE want="chain_file" ;;
        *) var=QESD_TSA_CA_FILE want="tsa_ca_file" ;;
    esac
    rc=0
    env QESD_PEPPER_FILE="$T/pepper" QESD_TLS_CERT="$T/server.pem" QESD_TLS_KEY="$T/server.key" \
        QESD_STORE=sqlite:$T/placeholder-$key.db QESD_LISTEN=127.0.0.1:0 \
        QESD_METRICS_LISTEN=127.0.0.1:$(qes_free_port) QESD_BUS=local "${doc_env[@]}" \
        "$var=$T/placeholder-$key" \
        timeout 20 "$QESD" serve --config "$T/k8s-qesd.conf" > /dev/null 2> "$T/placeholder-$key.err" || rc=$?
    expect_eq "$rc" 3 "qesd with the placeholder $key"
    expect_contains "$T/placeholder-$key.err" "$want $T/placeholder-$key holds no PEM certificate"
    [ ! -e "$T/placeholder-$key.db" ] || fail "qesd opened a store with the placeholder $key"
done
ok "the template's placeholder chain and TSA anchors are refused (exit 3, the store untouched)"

# ---------------------------------------------------------------------------
# systemd: the units verify, the stop timeout outlasts the drain.
drain=$(awk -F' *= *' '$1 == "drain_timeout_s" { print $2 }' "$D/systemd/qesd.conf")
stop=$(awk -F= '$1 == "TimeoutStopSec" { print $2 }' "$D/systemd/qesd.service")
[ -n "$drain" ] && [ -n "$stop" ] && [ "$stop" -gt "$drain" ] ||
    fail "qesd.service TimeoutStopSec ($stop) must exceed drain_timeout_s ($drain)"
grep -q '^ExecStart=/usr/bin/qesd serve --config /etc/qesd/qesd.conf$' "$D/systemd/qesd.service" ||
    fail "qesd.service must start qesd serve --config /etc/qesd/qesd.conf"
for k in NoNewPrivileges=yes ProtectSystem=strict User=qesd StateDirectory=qesd; do
    grep -qx "$k" "$D/systemd/qesd.service" || fail "qesd.service lacks $k"
done
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$T/units"
    for u in qesd.service qesd-backup.service qesd-backup.timer; do
        sed "s|/usr/bin/qesd|$QESD|" "$D/systemd/$u" > "$T/units/$u"
    done
    (cd "$T/units" && systemd-analyze verify ./qesd.service ./qesd-backup.service \
        ./qesd-backup.timer) > "$T/verify.out" 2>&1 ||
        { cat "$T/verify.out" >&2; fail "systemd-analyze verify"; }
    [ -s "$T/verify.out" ] && { cat "$T/verify.out" >&2; fail "systemd-analyze verify warns"; }
    ok "systemd-analyze verify: qesd.service, qesd-backup.service and .timer are clean; TimeoutStopSec $stop > drain $drain"
else
    ok "systemd-analyze is not installed: units not verified; TimeoutStopSec $stop > drain $drain"
fi
