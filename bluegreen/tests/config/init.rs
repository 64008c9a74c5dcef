//! `bluegreen init`: the shipped environment files are what Terraform's outputs (the fixtures in
//! tests/fixtures/terraform/, tied to the Terraform code by tools/checks/terraform_check.py) make
//! them, byte for byte; a drifted file is repaired byte for byte; a new file validates; bad input
//! changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::envs;

fn fixture(env: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/terraform/{env}.json"));
    std::fs::read_to_string(path).unwrap()
}

/// Runs `bluegreen --config-dir DIR init ARGS` with `input` on standard input: (exit code,
/// stdout, stderr).
fn init(dir: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bluegreen"))
        .arg("--config-dir")
        .arg(dir)
        .arg("init")
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config dir holding `text` as ENV's file (none when `text` is None).
fn dir_with(env: &str, text: Option<&str>) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let file = dir.path().join(env).join("bluegreen.toml");
    if let Some(text) = text {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
    }
    (dir, file)
}

mod tempdir {
    /// A fresh folder under the system's temporary folder, removed when dropped.
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "bluegreen-init-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn shipped(env: &str) -> String {
    std::fs::read_to_string(envs().join(env).join("bluegreen.toml")).unwrap()
}

#[test]
fn the_shipped_files_are_in_step_with_terraforms_outputs() {
    for env in ["prod", "preprod"] {
        let (code, out, err) = init(&envs(), &["-e", env, "--check"], &fixture(env));
        assert_eq!(code, 0, "{env}: {out}{err}");
        assert!(out.contains("is in step with Terraform"), "{out}");
    }
}

/// Every name Terraform owns drifted, a region gone and a stale one added: init writes the
/// shipped file back, byte for byte, and keeps what is the user's.
#[test]
fn a_drifted_file_is_regenerated_byte_for_byte() {
    for env in ["prod", "preprod"] {
        let original = shipped(env);
        let account = if env == "prod" {
            "222222222222"
        } else {
            "111111111111"
        };
        let mut drifted = original
            .replace(
                &format!("account_id = \"{account}\""),
                "account_id = \"999999999999\"",
            )
            .replace(
                &format!("::{account}:role/bluegreen-deploy"),
                "::999999999999:role/bluegreen-deploy",
            )
            .replace(&format!("\"hello-{env}-blue\""), "\"old-blue\"")
            .replace(&format!("\"bluegreen-{env}\""), "\"old-table\"")
            .replace("listener_port = 80\n", "listener_port = 8081\n")
            .replace("X-Bluegreen-Test", "X-Old")
            .replace(&format!("cluster = \"hello-{env}\""), "cluster = \"old\"")
            .replace("[regions.ap-southeast-2]\n", "")
            .replace(
                "[regions.us-east-1]\n",
                "[regions.us-east-1]\ncluster = \"hello-other\"\n[regions.us-west-2]\n",
            );
        if env == "prod" {
            drifted = drifted.replace(
                "[\"eu-west-1\", \"ap-southeast-2\"]",
                "[\"eu-west-1\", \"ap-southeast-2\", \"us-west-2\"]",
            );
        } else {
            drifted = drifted.replace("[[\"us-east-1\"]]", "[[\"us-east-1\"], [\"us-west-2\"]]");
        }
        assert_ne!(drifted, original);
        let (_dir, file) = dir_with(env, Some(&drifted));
        let dir = file.parent().unwrap().parent().unwrap();

        let (code, out, err) = init(dir, &["-e", env, "--check"], &fixture(env));
        assert_eq!(code, 1, "--check on a drifted file fails: {out}{err}");
        assert!(
            err.contains("differs from Terraform's outputs") && err.contains("-cluster = \"old\""),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            drifted,
            "--check writes nothing"
        );

        let (code, _, err) = init(dir, &["-e", env], &fixture(env));
        assert_eq!(code, 2, "no --force: refused");
        assert!(
            err.contains("pass --force") && err.contains("+account_id"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            drifted,
            "refused: nothing written"
        );

        let (code, out, err) = init(dir, &["-e", env, "--force"], &fixture(env));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("note: [regions.us-west-2] removed"), "{out}");
        assert!(out.contains("updated"), "{out}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            original,
            "{env}: byte for byte"
        );
    }
}

#[test]
fn a_new_file_validates_and_names_what_the_shipped_one_does() {
    for env in ["prod", "preprod"] {
        let (_dir, file) = dir_with(env, None);
        let dir = file.parent().unwrap().parent().unwrap();
        let (code, out, err) = init(dir, &["-e", env], &fixture(env));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("created"), "{out}");
        let made = bluegreen::config::load(dir, env, &Default::default()).unwrap();
        let ours = bluegreen::config::load(&envs(), env, &Default::default()).unwrap();
        assert_eq!(made.account_id, ours.account_id);
        assert_eq!(made.role_arn, ours.role_arn);
        assert_eq!(made.repository, ours.repository);
        assert_eq!(format!("{:?}", made.source), format!("{:?}", ours.source));
        assert_eq!(format!("{:?}", made.regions), format!("{:?}", ours.regions));
        assert_eq!(
            format!("{:?}", made.test_traffic),
            format!("{:?}", ours.test_traffic)
        );
        assert_eq!(
            (made.lock.table, made.lock.region),
            (ours.lock.table, ours.lock.region)
        );
        let mut regions: Vec<&String> = made.waves.iter().flatten().collect();
        regions.sort();
        let mut expected: Vec<&String> = ours.regions.keys().collect();
        expected.sort();
        assert_eq!(regions, expected, "every region in a wave");
        assert_eq!(
            made.waves[0],
            vec!["us-east-1".to_owned()],
            "the lock's region first"
        );
        let (code, out, err) = init(dir, &["-e", env, "--check"], &fixture(env));
        assert_eq!((code, out.contains("in step")), (0, true), "{out}{err}");
    }
}

/// What is the user's survives: strategy, hooks, a region's own probe, comments; a new region
/// gets a wave of its own and a note.
#[test]
fn the_users_keys_stay_and_new_regions_get_a_last_wave() {
    let mine = shipped("prod")
        .replace(
            "[regions.eu-west-1]\n",
            "[regions.eu-west-1]\n# no public route here\nprobe = \"none\"\n",
        )
        .replace("steps = [10, 50, 100]", "steps = [5, 25, 100] # slower");
    let (_dir, file) = dir_with("prod", Some(&mine));
    let dir = file.parent().unwrap().parent().unwrap();
    let mut tf: serde_json::Value = serde_json::from_str(&fixture("prod")).unwrap();
    let regions = tf.pointer_mut("/bluegreen/value/regions").unwrap();
    let mut west = regions["eu-west-1"].clone();
    west["cluster"] = "hello-prod-2".into();
    regions["us-west-2"] = west;
    let (code, out, err) = init(dir, &["-e", "prod", "--force"], &tf.to_string());
    assert_eq!(code, 0, "{out}{err}");
    let now = std::fs::read_to_string(&file).unwrap();
    assert!(
        now.contains("[regions.eu-west-1]\n# no public route here\nprobe = \"none\"\n"),
        "{now}"
    );
    assert!(now.contains("steps = [5, 25, 100] # slower"), "{now}");
    assert!(
        now.contains("[regions.us-west-2]\ncluster = \"hello-prod-2\"\n"),
        "{now}"
    );
    assert!(
        now.contains(
            "waves = [[\"us-east-1\"], [\"eu-west-1\", \"ap-southeast-2\"], [\"us-west-2\"]]"
        ),
        "{now}"
    );
    assert!(
        out.contains("note: waves: us-west-2 new in Terraform"),
        "{out}"
    );
    let plan = bluegreen::config::load(dir, "prod", &Default::default()).unwrap();
    assert_eq!(plan.regions["us-west-2"].cluster, "hello-prod-2");
    assert_eq!(plan.regions["eu-west-1"].cluster, "hello-prod");
}

/// Terraform's other shapes: one output's value, a state, a plan; a plan's unknowns are named.
#[test]
fn every_shape_terraform_writes_is_read() {
    let tf: serde_json::Value = serde_json::from_str(&fixture("prod")).unwrap();
    let value = tf["bluegreen"]["value"].clone();
    let state = serde_json::json!({"format_version": "1.0", "terraform_version": "1.13.4",
        "values": {"outputs": tf.clone(), "root_module": {}}});
    let plan = serde_json::json!({"format_version": "1.2", "terraform_version": "1.13.4",
        "planned_values": {"outputs": tf.clone(), "root_module": {}},
        "output_changes": {"bluegreen": {"actions": ["no-op"], "before": value, "after": value,
            "after_unknown": false, "before_sensitive": false, "after_sensitive": false}}});
    let mut sensitive = tf.clone();
    sensitive["bluegreen"]["sensitive"] = true.into();
    for (what, input) in [
        ("value", &value),
        ("state", &state),
        ("plan", &plan),
        ("sensitive", &sensitive),
    ] {
        let (code, out, err) = init(&envs(), &["-e", "prod", "--check"], &input.to_string());
        assert_eq!(code, 0, "{what}: {out}{err}");
    }
    let mut unknown = plan.clone();
    unknown["output_changes"]["bluegreen"]["after_unknown"] =
        serde_json::json!({"role_arn": true, "regions": {"eu-west-1": {"alarms": [false, true]}}});
    let (code, _, err) = init(&envs(), &["-e", "prod", "--check"], &unknown.to_string());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bluegreen.role_arn")
            && err.contains("bluegreen.regions.eu-west-1.alarms[1]")
            && err.contains("after apply"),
        "{err}"
    );
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let tf: serde_json::Value = serde_json::from_str(&fixture("prod")).unwrap();
    let with = |pointer: &str, v: serde_json::Value| {
        let mut t = tf.clone();
        *t.pointer_mut(pointer).unwrap() = v;
        t.to_string()
    };
    let without = |pointer: &str, key: &str| {
        let mut t = tf.clone();
        t.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        t.to_string()
    };
    // The bluegreen output marked sensitive: read as any other, but no error shows its values.
    let sensitive_with = |pointer: &str, v: serde_json::Value| {
        let mut t = tf.clone();
        t["bluegreen"]["sensitive"] = true.into();
        *t.pointer_mut(pointer).unwrap() = v;
        t.to_string()
    };
    let secret = serde_json::json!({"db_password": {"sensitive": true, "type": "string", "value": "hunter2-secret"}});
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("not JSON", "terraform: command not found".into(), vec!["is not JSON (expected ident at line 1 column 2)", "terraform output -json"]),
        ("no bluegreen output", secret.to_string(), vec!["no `bluegreen` output (they have: db_password)", "environments/prod/outputs.tf"]),
        ("an array", "[]".into(), vec!["not an object"]),
        ("a key missing", without("/bluegreen/value/regions/eu-west-1", "alarms"), vec!["bluegreen.regions.eu-west-1.alarms is missing"]),
        ("a port as text", with("/bluegreen/value/regions/us-east-1/listener_port", "80".into()), vec!["bluegreen.regions.us-east-1.listener_port must be a port number", "\"80\""]),
        ("a bad account", with("/bluegreen/value/account_id", "2222".into()), vec!["bluegreen.account_id is \"2222\", not a 12-digit AWS account ID"]),
        ("an unknown region", tf.to_string().replace("\"eu-west-1\":", "\"eu-nowhere-1\":"), vec!["\"eu-nowhere-1\" is not an AWS region"]),
        ("headers disagree", with("/bluegreen/value/regions/eu-west-1/test_header", "X-Other".into()), vec!["regions disagree on test_header (X-Bluegreen-Test, X-Other)"]),
        ("no regions", with("/bluegreen/value/regions", serde_json::json!({})), vec!["bluegreen.regions is empty"]),
        ("an empty name", with("/bluegreen/value/regions/us-east-1/cluster", "".into()), vec!["bluegreen.regions.us-east-1.cluster is empty"]),
        ("a name AWS refuses", with("/bluegreen/value/regions/us-east-1/cluster", "no spaces allowed".into()), vec!["the file init would write does not validate", "a key Terraform owns is fixed in Terraform", "regions.us-east-1.cluster: \"no spaces allowed\" is not a cluster name"]),
        ("an empty state", serde_json::json!({"format_version": "1.0"}).to_string(), vec!["no `bluegreen` output (they have: none)", "terraform apply"]),
        ("a sensitive output's bad value", sensitive_with("/bluegreen/value/account_id", "hunter2-secret".into()), vec!["bluegreen.account_id is a value not shown (the output is sensitive), not a 12-digit AWS account ID"]),
        ("Terraform 2", serde_json::json!({"format_version": "2.0", "values": {}}).to_string(), vec!["format 2.0 is not one bluegreen reads"]),
    ];
    for (what, input, wanted) in cases {
        for existing in [None, Some(shipped("prod"))] {
            let (_dir, file) = dir_with("prod", existing.as_deref());
            let dir = file.parent().unwrap().parent().unwrap();
            let (code, out, err) = init(dir, &["-e", "prod", "--force"], &input);
            assert_eq!(code, 2, "{what}: {out}{err}");
            for w in &wanted {
                assert!(err.contains(w), "{what}: wanted {w:?} in {err}");
            }
            assert!(
                !err.contains("hunter2-secret"),
                "{what}: a sensitive value is never shown: {err}"
            );
            assert_eq!(
                std::fs::read_to_string(&file).ok(),
                existing,
                "{what}: nothing written"
            );
        }
    }
    let (code, _, err) = init(&envs(), &["-e", "../prod", "--check"], &fixture("prod"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an environment name"), "{err}");
    let (_dir, file) = dir_with("prod", Some("account_id = [\n"));
    let dir = file.parent().unwrap().parent().unwrap();
    let (code, _, err) = init(dir, &["-e", "prod", "--force"], &fixture("prod"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the existing file is not TOML") && err.contains("line 1"),
        "{err}"
    );
    let (code, _, err) = init(dir, &["-e", "prod", "--check", "--force"], &fixture("prod"));
    assert_eq!(code, 2, "clap refuses --check with --force: {err}");
}
