#!/usr/bin/env python3
"""Checks of the rendered Helm chart that need no cluster (run by deploy/check).

    k8s_checks.py ingress  RENDERED.yaml   every public route to its service, no internal one
    k8s_checks.py policy   RENDERED.yaml   non-root, read-only root, no escalation, limits, probes
    k8s_checks.py shutdown RENDERED.yaml   terminationGracePeriodSeconds covers preStop + grace + drain
    k8s_checks.py run      RENDERED.yaml   start the Job's and Deployments' commands as the image would

Each prints what it checked and exits non-zero with every failure listed.
"""

import atexit
import base64
import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("account", "oauth", "mailer")
# Mounted by every service (crates/runtime) or only by the embedded process: never public.
INTERNAL_PREFIXES = ("/internal/", "/admin/", "/dev/")
INTERNAL_EXACT = ("/metrics", "/healthz", "/readyz", "/internal", "/admin", "/dev")


def load(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def component(doc):
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def fail_if(errors, what):
    if errors:
        print(f"FAILED: {what}")
        for e in errors:
            print(f"  - {e}")
        sys.exit(1)
    print(f"ok: {what}")


# --- ingress -------------------------------------------------------------------------


def code_routes():
    """{path: set(services)} of the routes each service's code mounts."""
    found = {}
    for svc in SERVICES:
        for f in sorted((ROOT / "services" / svc / "src").rglob("*.rs")):
            # Unit tests (a fake upstream's routes) are not the service's: they come
            # last in a file, after `#[cfg(test)]`.
            text = f.read_text().split("#[cfg(test)]", 1)[0]
            if re.search(r"web::scope\(|web::resource\(", text):
                sys.exit(
                    f"{f}: web::scope / web::resource are not understood by this test: "
                    "teach code_routes() their paths"
                )
            for m in re.finditer(r'\.route\(\s*"([^"]+)"', text):
                found.setdefault(m.group(1), set()).add(svc)
    for m in re.finditer(
        r'\.route\(\s*"([^"]+)"', (ROOT / "crates/runtime/src/health.rs").read_text()
    ):
        found.setdefault(m.group(1), set()).update(SERVICES)
    return found


def concrete(path):
    """A request path for a route pattern: `{id}` becomes a sample segment."""
    return re.sub(r"\{[^}]+\}", "x0", path)


def is_internal(path):
    return path in INTERNAL_EXACT or path.startswith(INTERNAL_PREFIXES)


def ingress_rules(docs):
    rules = []
    for d in docs:
        if d["kind"] != "Ingress":
            continue
        for rule in d["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                rules.append(
                    (p["path"], p["pathType"], p["backend"]["service"]["name"], d)
                )
    return rules


def matches(rule_path, path_type, path):
    """Kubernetes Ingress matching: Exact, or Prefix by whole path elements."""
    if path_type == "Exact":
        return path == rule_path
    if path_type == "Prefix":
        prefix = rule_path.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")
    raise ValueError(f"pathType {path_type} has no defined matching")


def route(rules, path):
    """The backend a request path goes to (longest match; Exact wins a tie), or None."""
    best = None
    for rule_path, path_type, service, _ in rules:
        if matches(rule_path, path_type, path):
            key = (len(rule_path.rstrip("/")), path_type == "Exact")
            if best is None or key > best[0]:
                best = (key, service)
    return best[1] if best else None


def check_ingress(rendered):
    docs = load(rendered)
    rules = ingress_rules(docs)
    errors = []
    if not rules:
        fail_if(["no Ingress rendered"], "ingress")
    services = {
        d["metadata"]["name"]: component(d) for d in docs if d["kind"] == "Service"
    }
    for d in docs:
        if d["kind"] != "Ingress":
            continue
        if not d["spec"].get("tls"):
            errors.append(f"Ingress {d['metadata']['name']} has no TLS")
        hosts = {r.get("host") for r in d["spec"]["rules"]}
        tls_hosts = {h for t in d["spec"].get("tls", []) for h in t.get("hosts", [])}
        if not hosts <= tls_hosts:
            errors.append(f"hosts {hosts - tls_hosts} are served without TLS")
    for rule_path, path_type, service, _ in rules:
        if path_type not in ("Exact", "Prefix"):
            errors.append(f"{rule_path}: pathType {path_type} (controller-specific)")
        if service not in services:
            errors.append(f"{rule_path} goes to {service}, which the chart does not render")
        if rule_path == "/" and path_type != "Exact":
            errors.append("/ as a Prefix routes everything, /internal and /metrics included")

    def served_by(path):
        return {services.get(route(rules, path))} - {None}

    code = code_routes()
    public = {p: s for p, s in code.items() if not is_internal(p)}
    for path, owners in sorted(code.items()):
        got = served_by(concrete(path))
        if is_internal(path):
            if got:
                errors.append(f"{path} is internal but the Ingress routes it to {got}")
        elif len(owners) != 1:
            errors.append(f"{path} is mounted by {sorted(owners)}: which one is public?")
        elif got != owners:
            errors.append(
                f"{path} is served by the {next(iter(owners))} service, the Ingress sends it to {got or 'nothing'}"
            )
    spec = json.loads((ROOT / "proto-docs/openapi.json").read_text())
    for path in sorted(spec["paths"]):
        got = served_by(concrete(path))
        owners = public.get(path)
        if is_internal(path):
            # The admin API is described (operators script it) but served on each
            # service's own port: every operation must say so by requiring the admin
            # token, and the gateway must not route it.
            for method, op in spec["paths"][path].items():
                schemes = {k for req in op.get("security", []) for k in req}
                if schemes != {"admin_token"}:
                    errors.append(
                        f"OpenAPI {method.upper()} {path} is internal but not an admin_token operation"
                    )
            if got:
                errors.append(f"OpenAPI path {path} is internal but the Ingress routes it to {got}")
            if path not in code:
                errors.append(f"OpenAPI path {path} is mounted by no service's code")
        elif owners is None:
            errors.append(f"OpenAPI path {path} is mounted by no service's code")
        elif got != owners:
            errors.append(
                f"OpenAPI path {path} is served by {sorted(owners)}, the Ingress sends it to {got or 'nothing'}"
            )
    for probe in (
        "/internal",
        "/internal/v1/codes",
        "/admin",
        "/admin/v1/partners",
        "/admin/v1/api-keys/x0",
        "/metrics",
        "/healthz",
        "/readyz",
        "/dev/inbox",
        "/dev/inbox.json",
    ):
        if served_by(probe):
            errors.append(f"{probe} is routed to {served_by(probe)}")
    print(
        f"  {len(spec['paths'])} OpenAPI paths, {len(public)} public and "
        f"{len(code) - len(public)} internal routes of the code, {len(rules)} Ingress paths"
    )
    fail_if(errors, f"ingress ({rendered})")


# --- policy --------------------------------------------------------------------------


def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def check_policy(rendered):
    docs = load(rendered)
    errors = []
    n = 0
    for d, spec in pod_specs(docs):
        n += 1
        name = f"{d['kind']}/{d['metadata']['name']}"
        pod = spec.get("securityContext", {})
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            errors.append(f"{name}: shares a host namespace")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: mounts a service account token it does not need")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", pod.get("runAsNonRoot"))
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            if non_root is not True:
                errors.append(f"{cname}: runAsNonRoot is not true")
            if uid is None or int(uid) == 0:
                errors.append(f"{cname}: no numeric non-root runAsUser")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cname}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cname}: privilege escalation is allowed")
            if sc.get("privileged"):
                errors.append(f"{cname}: privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                errors.append(f"{cname}: capabilities are not all dropped")
            if sc.get("capabilities", {}).get("add"):
                errors.append(f"{cname}: adds capabilities")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        errors.append(f"{cname}: no {kind}.{r}")
            if d["kind"] != "Job":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe not in c:
                        errors.append(f"{cname}: no {probe}")
                paths = {
                    p: c.get(p, {}).get("httpGet", {}).get("path")
                    for p in ("livenessProbe", "readinessProbe")
                }
                if paths != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
                    errors.append(f"{cname}: probes {paths}")
            if any(e.get("value") and re.search(r"(?i)password|secret|token|key", e["name"]) for e in c.get("env", [])):
                errors.append(f"{cname}: a credential is given as a literal env value")
    if n == 0:
        errors.append("no pod specs rendered")
    fail_if(errors, f"policy of {n} workloads ({rendered})")


# --- shutdown ------------------------------------------------------------------------


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_shutdown(rendered):
    docs = load(rendered)
    config = config_of(docs)
    errors = []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = env_of(c)
        grace_ms = int(env.get("ADMIT_SHUTDOWN_GRACE_MS") or 5000)
        drain = int(env.get("ADMIT_SHUTDOWN_DRAIN_SECS") or 30)
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        need = pre + grace_ms / 1000 + drain
        if component(d) == "mailer":
            smtp = config.get("mailer", {}).get("smtp", {}).get("timeout_secs", 30)
            need = pre + grace_ms / 1000 + max(drain, smtp)
        have = spec.get("terminationGracePeriodSeconds", 30)
        if have < need:
            errors.append(
                f"{d['metadata']['name']}: terminationGracePeriodSeconds {have} < preStop {pre} + "
                f"grace {grace_ms} ms + drain {need - pre - grace_ms / 1000:.0f} s"
            )
        if pre <= 0:
            errors.append(f"{d['metadata']['name']}: no preStop pause before SIGTERM")
        probe = c["readinessProbe"]
        notice = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        if pre + grace_ms / 1000 < notice:
            errors.append(
                f"{d['metadata']['name']}: readiness notices a drain after {notice} s, "
                f"but the listener closes after {pre + grace_ms / 1000} s"
            )
    fail_if(errors, f"shutdown timings ({rendered})")


# --- run: the image's commands with the chart's configuration --------------------------


def config_of(docs):
    for d in docs:
        if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}):
            return yaml.safe_load(d["data"]["config.yaml"])
    return {}


class _Relay(socketserver.StreamRequestHandler):
    """Enough of an SMTP relay for the mailer's readiness check (it reads the
    greeting): the chart's relay host is the operator's and is not reachable here."""

    def handle(self):
        self.wfile.write(b"220 admit-k8s-check ESMTP\r\n")
        for line in self.rfile:
            if line.strip().upper() == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            self.wfile.write(b"250 ok\r\n")


def fake_relay():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Relay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def check_run(rendered):
    """Starts the migration Job's command, then each Deployment's, with the rendered
    settings file and the variables the chart sets (the Secret's values from the test
    services), as the image's non-root user, in a directory it cannot write; each must
    become ready and exit 0 on SIGTERM within its terminationGracePeriodSeconds."""
    docs = load(rendered)
    bin_dir = Path(os.environ.get("ADMIT_BIN_DIR", ROOT / "target/debug"))
    db_url = os.environ["ADMIT_K8S_DATABASE_URL"]
    secrets = {
        "ADMIT__DATABASE__URL": db_url,
        "ADMIT__REDIS__URL": os.environ.get("ADMIT_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        "ADMIT__INTERNAL__LINK_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ADMIT__OAUTH__KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ADMIT__INTERNAL__TOKEN": base64.b64encode(os.urandom(24)).decode(),
        "ADMIT__INTERNAL__ADMIN_TOKEN": base64.b64encode(os.urandom(24)).decode(),
        "ADMIT__MAILER__SMTP__PASSWORD": "unused",
        "ADMIT__ACCOUNT__CAPTCHA__SECRET": "unused",
    }
    uid = os.environ.get("ADMIT_K8S_RUN_UID", "10001")
    errors = []
    work = Path(tempfile.mkdtemp(prefix="admit-k8s-run."))
    atexit.register(shutil.rmtree, work, True)
    cfg_dir = work / "etc-admit"
    cfg_dir.mkdir()
    (cfg_dir / "config.yaml").write_text(yaml.safe_dump(config_of(docs)))
    cwd = work / "ro"
    cwd.mkdir()
    # The image's /usr/local/bin: the binaries where the image's user can reach them
    # (a checkout under /root cannot be read by uid 10001).
    image_bin = work / "bin"
    image_bin.mkdir()
    for exe in bin_dir.glob("admit*"):
        if exe.is_file() and os.access(exe, os.X_OK):
            try:
                os.link(exe, image_bin / exe.name)
            except OSError:
                shutil.copy2(exe, image_bin / exe.name)
    for p in (work, cfg_dir, cwd, image_bin):
        p.chmod(0o755)
    (cfg_dir / "config.yaml").chmod(0o644)

    def env_for(container, extra):
        env = {"PATH": f"{image_bin}:/usr/bin:/bin", "HOME": str(cwd), "HOSTNAME": f"check-{container['name']}"}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e["name"] in secrets:
                env[e["name"]] = secrets[e["name"]]
            elif not e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional"):
                errors.append(f"{container['name']}: no test value for {e['name']}")
        if env.get("ADMIT_CONFIG") == "/etc/admit/config.yaml":
            env["ADMIT_CONFIG"] = str(cfg_dir / "config.yaml")
        env.update(extra)
        return env

    def as_image_user(container):
        cmd = list(container["command"]) + list(container.get("args", []))
        exe = image_bin / cmd[0]
        if not exe.exists():
            errors.append(f"{exe} is missing: build the workspace's binaries first")
            return None
        if os.geteuid() == 0:
            return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", str(exe)] + cmd[1:]
        return [str(exe)] + cmd[1:]

    for d in docs:
        if d["kind"] != "Job":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        argv = as_image_user(c)
        if argv is None:
            continue
        env = env_for(c, {})
        out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            errors.append(f"Job {d['metadata']['name']}: {' '.join(c['command'])} failed: {out.stderr[-2000:]}")
        else:
            print(f"  Job {d['metadata']['name']}: {' '.join(c['command'])}: {out.stdout.strip()}")
    fail_if(errors, "the migration Job's command")

    relay_port = fake_relay()
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        argv = as_image_user(c)
        if argv is None:
            continue
        # Port 0: the test machine's ports are shared; the chart's port is in the file.
        port_var = f"ADMIT__{component(d).upper()}__PORT"
        # The chart's SMTP relay is the operator's: a local one stands in for it.
        env = env_for(
            c,
            {
                port_var: "0",
                "ADMIT__MAILER__SMTP__HOST": "127.0.0.1",
                "ADMIT__MAILER__SMTP__PORT": str(relay_port),
            },
        )
        log = work / f"{c['name']}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True)
        url = None
        deadline = time.time() + 60
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if " listening on " in line:
                url = line.split(" listening on ", 1)[1].strip()
        name = d["metadata"]["name"]
        if url is None:
            proc.kill()
            proc.wait()
            errors.append(f"{name}: did not start: {log.read_text()[-2000:]}")
            continue
        ready = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + c["readinessProbe"]["httpGet"]["path"], timeout=5) as r:
                    ready = r.status
                    break
            except urllib.error.HTTPError as e:  # not ready yet: say why
                ready = f"{e}: {e.read().decode(errors='replace')[:500]}"
                time.sleep(0.2)
            except Exception as e:  # not listening yet
                ready = e
                time.sleep(0.2)
        if ready != 200:
            errors.append(f"{name}: readiness answered {ready}: {log.read_text()[-2000:]}")
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        limit = spec.get("terminationGracePeriodSeconds", 30)
        try:
            rc = proc.wait(timeout=limit)
            if rc != 0:
                errors.append(f"{name}: exited {rc} on SIGTERM: {log.read_text()[-2000:]}")
            else:
                print(f"  {name}: {' '.join(c['command'])} as uid {uid}: ready, stopped in {time.time() - started:.1f} s of {limit}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            errors.append(f"{name}: still running {limit} s after SIGTERM")
        text = log.read_text()
        if not any(l.startswith("{") for l in text.splitlines()):
            errors.append(f"{name}: no JSON log lines")
        for secret in secrets.values():
            if secret in text and secret != "unused":
                errors.append(f"{name}: a credential appears in its log")
    fail_if(errors, f"the Deployments' commands with the chart's settings ({rendered})")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("ingress", "policy", "shutdown", "run"):
        sys.exit(__doc__)
    {"ingress": check_ingress, "policy": check_policy, "shutdown": check_shutdown, "run": check_run}[
        sys.argv[1]
    ](sys.argv[2])
