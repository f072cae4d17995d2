//! The systemd unit against the .deb's layout and systemd's own analysers.

use super::*;

fn unit_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The unit runs the binary on the data dir systemd creates for it, as the
/// user the .deb creates.
#[test]
fn systemd_unit_matches_the_deb_and_the_data_dir() {
    let unit = read(UNIT);
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        ["/usr/bin/pulsebase serve --data /var/lib/pulsebase"]
    );
    assert_eq!(unit_value(&unit, "StateDirectory"), ["pulsebase"]);
    assert_eq!(
        unit_value(&unit, "EnvironmentFile"),
        ["-/etc/pulsebase/pulsebase.env"]
    );
    let user = unit_value(&unit, "User");
    assert_eq!(user, ["pulsebase"]);
    let postinst = read("packaging/debian/postinst");
    assert!(
        postinst.contains("adduser --system") && postinst.contains(" pulsebase\n"),
        "packaging/debian/postinst does not create the unit's user {user:?}"
    );
    // cargo-deb replaces every #DEBHELPER#, comments included: a second one
    // would start the service before the user exists.
    assert_eq!(
        postinst.matches("#DEBHELPER#").count(),
        1,
        "packaging/debian/postinst needs #DEBHELPER# exactly once, after adduser"
    );
    assert!(postinst.find("adduser") < postinst.find("#DEBHELPER#"));

    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("deb assets");
    let destinations: Vec<&str> = assets.iter().map(|a| a[1].as_str().unwrap()).collect();
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        if !source.starts_with("target/") {
            assert!(repo(source).exists(), "deb asset {source} does not exist");
        }
    }
    for conffile in deb["conf-files"].as_array().expect("deb conf-files") {
        let path = conffile.as_str().unwrap().trim_start_matches('/');
        assert!(
            destinations.contains(&path),
            "conffile {path} is not installed by any asset: {destinations:?}"
        );
    }
    let env_file = unit_value(&unit, "EnvironmentFile")[0].trim_start_matches("-/");
    assert!(
        destinations.contains(&env_file),
        "the .deb does not install {env_file}"
    );
}

/// `systemd-analyze verify` accepts the unit without a single warning (it
/// only warns about unknown keys and bad values, so any output fails), and
/// `systemd-analyze security` rates its sandbox at most 2.0 ("OK"). The
/// copy points ExecStart at the built binary: verify checks that it exists.
#[test]
fn systemd_unit_passes_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the unit: install systemd-analyze (apt-get install systemd)"
        );
        eprintln!("SKIPPED: systemd-analyze not found (apt-get install systemd)");
        return;
    }
    let unit = read(UNIT);
    let exec = "ExecStart=/usr/bin/pulsebase ";
    assert_eq!(unit.matches(exec).count(), 1, "one ExecStart in {UNIT}");
    let local = unit.replace(
        exec,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_pulsebase")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pulsebase.service");
    std::fs::write(&path, local).unwrap();

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{said}",
        verify.status
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--no-pager", "--offline=yes"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let Some(level) = report
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for pulsebase.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
    else {
        // systemd before 250 has no --offline; verify above still ran.
        eprintln!(
            "SKIPPED: no offline security report ({}): {}",
            security.status,
            String::from_utf8_lossy(&security.stderr)
        );
        return;
    };
    assert!(level <= 2.0, "exposure level {level} > 2.0:\n{report}");
}
