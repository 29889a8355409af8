//! `cargo run --release -p ponte-bench`: a benchmark of what ships. Builds the release
//! `ponte` and `ponte-connector`, runs them as processes beside an nginx origin and an
//! nginx reverse proxy to the same origin, and measures four paths in alternating rounds
//! — direct (origin), nginx (proxy), Ponte gateway (remote session), Ponte proxy-http —
//! and two yardsticks with a tunnel's two hops: nginx proxying to the nginx proxy, and
//! rathole (a Rust TCP tunnel, server and client, installed from crates.io on first use),
//! printing one markdown table with ratios to nginx, nginx×2 and rathole, and the goals.
//! Everything is on 127.0.0.1 with OS-chosen ports; must never reach another address, and must leave no
//! child process behind on any exit. Not a test: nothing here runs in CI but the unit
//! tests of the table arithmetic.

mod idle;
mod load;
mod procs;
mod report;
mod setup;
mod table;

use anyhow::{bail, Context as _};
use clap::Parser;
use load::Target;
use procs::Children;
use setup::{build, target_dir, targets, unlimited_rate_flags, workspace_root, RunDir};
use std::process::Command;
use std::time::{Duration, Instant};
use table::{ms, note, render};

const MB: f64 = 1024.0 * 1024.0;
const CPU_ROWS: usize = 5;
/// The columns, in the order `targets` builds them (rathole last, when it runs).
const GATEWAY: usize = 2;
const NGINX: usize = 1;
const PROXY_HTTP: usize = 3;
const TWO_HOPS: usize = 4;
const RATHOLE: usize = 5;
const TENANT: i32 = 2;
const EQUIPMENT: i32 = 100;

#[derive(Parser, Debug)]
#[command(
    name = "ponte-bench",
    about = "Benchmark the release ponte beside nginx"
)]
struct Args {
    /// Short run (1 round, fewer requests, 2 s saturation) to check the set-up
    #[arg(long)]
    quick: bool,
    /// Rounds; each measures every path in turn, the table keeps the best [default: 3]
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of each c=64 saturation run [default: 4]
    #[arg(long)]
    duration: Option<f64>,
    /// Requests of each c=1 latency run [default: 2000]
    #[arg(long)]
    requests: Option<usize>,
    /// Concurrent workers of the saturation and parallel-download runs
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pass --per-target-concurrency N to the connector [default: what ships (4)]
    #[arg(long)]
    per_target_concurrency: Option<usize>,
    /// Idle connectors (raw WebSocket peers after HELLO) for the cloud's RSS per idle
    /// connector; 0 skips the row [default: 500, --quick: 0]
    #[arg(long)]
    idle: Option<usize>,
    /// Use the binaries in target/release as they are, without `cargo build`
    #[arg(long)]
    no_build: bool,
    /// Keep the run directory (configs, logs, database) instead of removing it
    #[arg(long)]
    keep: bool,
    /// Leave out the rathole column (and its install on first use)
    #[arg(long)]
    no_rathole: bool,
    /// Instead of the table: N sequential gateway GETs of the small file (after a
    /// warm-up), for profilers. `PONTE_BENCH_WRAP_CLOUD` / `PONTE_BENCH_WRAP_CONNECTOR`
    /// prefix the two processes' command lines (e.g. `valgrind --tool=callgrind`); with
    /// `PONTE_BENCH_CALLGRIND=1` the counters are zeroed before the N requests and
    /// dumped after them (`callgrind_control -z` / `-d`), so the dump is N requests.
    #[arg(long, value_name = "N")]
    profile: Option<usize>,
    /// With --profile: instead of N sequential GETs, keep --concurrency GETs in flight
    /// for N seconds (where a c=64 request's CPU goes).
    #[arg(long, requires = "profile")]
    saturate: bool,
}

struct Settings {
    rounds: usize,
    duration: Duration,
    requests: usize,
    warmup: usize,
    conc: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        // Ctrl-C drops the run, and with it the child guard, which kills the children.
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ponte-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What one path is, per measurement: a request for each file, `None` where the path
/// cannot serve it (proxy-http buffers and caps responses at 8 MiB).
struct PathTargets {
    name: &'static str,
    small: Target,
    one_mb: Target,
    hundred_mb: Option<Target>,
}

#[derive(Default)]
struct Measured {
    c1_p50: Vec<f64>,
    c1_p99: Vec<f64>,
    c64_rate: Vec<f64>,
    c64_p99: Vec<f64>,
    // CPU per answered request at c=64, µs, per round: nginx (origin and proxies are one
    // nginx), `ponte serve`, `ponte-connector`, the load generator (this process),
    // rathole's server and client.
    c64_cpu: Vec<[f64; CPU_ROWS]>,
    big: Vec<f64>,
    par: Vec<f64>,
    // Errors per measurement, summed over the rounds.
    c1_err: u64,
    c64_err: u64,
    big_err: u64,
    par_err: u64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let s = Settings {
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 3 }),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if args.quick {
            2.0
        } else {
            4.0
        })),
        requests: args.requests.unwrap_or(if args.quick { 300 } else { 2000 }),
        warmup: if args.quick { 30 } else { 200 },
        conc: args.concurrency,
    };
    let root = workspace_root();
    let bin = build(&root, args.no_build)?;
    procs::nginx_binary()?;
    let mut dir = RunDir {
        path: std::env::temp_dir().join(format!("ponte-bench-{}", std::process::id())),
        keep: true, // until the run succeeds
    };
    std::fs::create_dir_all(&dir.path)?;
    let d = dir.path.clone();
    let mut kids = Children::default();
    let started = Instant::now();

    // The origin and the reverse proxy.
    procs::write_files(&d)?;
    let (origin_port, proxy_port) = (procs::free_port()?, procs::free_port()?);
    let two_hops_port = procs::free_port()?;
    let conf = procs::nginx_conf(&d, origin_port, proxy_port, two_hops_port);
    let nginx_pid = procs::start_nginx(
        &mut kids,
        &d,
        &conf,
        &[origin_port, proxy_port, two_hops_port],
    )
    .await?;
    let rathole = match args.no_rathole || args.profile.is_some() {
        true => None,
        false => match procs::rathole_binary(&target_dir(&root)) {
            Some(bin) => Some(procs::start_rathole(&mut kids, &bin, &d, origin_port)?),
            None => None,
        },
    };

    // The cloud, set up as the README's Deploy section does it.
    let ponte = bin.join("ponte");
    let admin = |a: &[&str]| -> anyhow::Result<String> {
        procs::output(
            Command::new(&ponte)
                .arg("admin")
                .arg("--data-dir")
                .arg(d.join("cloud"))
                .args(a)
                .env_remove("PONTE_CONFIG"),
        )
    };
    let (tid, eid) = (TENANT.to_string(), EQUIPMENT.to_string());
    admin(&[
        "tenant",
        "add",
        "--cliente",
        "1",
        "--instituicao",
        &tid,
        "--name",
        "Bench",
    ])?;
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    admin(&[
        "equipment",
        "add",
        "--instituicao",
        &tid,
        "--id",
        &eid,
        "--name",
        "Origin",
        "--addon",
        "--base-url",
        &origin_url,
    ])?;
    let token = admin(&[
        "user-token",
        "--user",
        "7",
        "--instituicao",
        &tid,
        "--ttl",
        "4h",
    ])?
    .trim()
    .to_owned();
    let idle_n = args.idle.unwrap_or(if args.quick { 0 } else { 500 });
    let admin_token = admin(&["user-token", "--user", "7", "--admin", "--ttl", "4h"])?
        .trim()
        .to_owned();
    idle::make_tenants(&ponte, &d.join("cloud"), idle_n)?;
    let serve_flags = unlimited_rate_flags(&ponte)?;
    let cloud = procs::start_cloud(&mut kids, &ponte, &d, &serve_flags)?;
    let api = format!("http://{}", cloud.api);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // Pair a connector with a one-time code, as the console does, and run it.
    let pair: serde_json::Value = http
        .post(format!("{api}/api/instituicao/{tid}/connector/pair"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()
        .context("creating a pairing code")?
        .json()
        .await?;
    let code = pair["pairingCode"]
        .as_str()
        .context("no pairingCode in the answer")?;
    let connector = bin.join("ponte-connector");
    let conn_cfg = d.join("connector.toml");
    procs::output(
        Command::new(&connector)
            .args([
                "pair", "--server", &api, "--code", code, "--name", "bench", "--config",
            ])
            .arg(&conn_cfg),
    )?;
    let mut conn_flags = Vec::new();
    if let Some(n) = args.per_target_concurrency {
        conn_flags = vec!["--per-target-concurrency".to_owned(), n.to_string()];
    }
    let connector_pid = procs::start_connector(&mut kids, &connector, &d, &conn_cfg, &conn_flags)?;
    let status_url = format!("{api}/api/instituicao/{tid}/connector/status");
    procs::wait_for(
        "the connector to be ONLINE",
        Duration::from_secs(30),
        || {
            let (http, url, token) = (http.clone(), status_url.clone(), token.clone());
            async move {
                let Ok(r) = http.get(url).bearer_auth(token).send().await else {
                    return false;
                };
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                v["status"] == "ONLINE"
            }
        },
    )
    .await
    .with_context(|| format!("see {}/connector.log", d.display()))?;

    // A remote session, launched as a browser would: its cookie and path.
    let created: serde_json::Value = http
        .post(format!(
            "{api}/api/instituicao/{tid}/equipamento/{eid}/remoto/sessoes"
        ))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()
        .context("opening a remote session")?
        .json()
        .await?;
    let launch = created["url"].as_str().context("no url in the session")?;
    // The GET is a page that confirms with a POST; a browser's script posts at once.
    let r = http.post(launch).send().await?;
    if r.status() != 303 {
        bail!("launch answered {}, not 303", r.status());
    }
    let cookie = r.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let prefix = r.headers()["location"].to_str()?.to_owned(); // /remote/s/<sid>/
    eprintln!(
        "ponte-bench: set up in {:.1} s (origin :{origin_port}, nginx :{proxy_port}, api {}, gateway {})",
        started.elapsed().as_secs_f64(),
        cloud.api,
        cloud.gateway
    );

    let mut yardsticks = vec![("nginx×2", two_hops_port)];
    yardsticks.extend(rathole.map(|(port, _)| ("rathole", port)));
    let paths = targets(
        origin_port,
        proxy_port,
        &yardsticks,
        &cloud,
        &prefix,
        &cookie,
        &token,
    )?;
    let mut rathole_pids = vec![];
    if let Some((_, pids)) = rathole {
        // rathole accepts on its public port before its client has connected, and
        // closes what it cannot forward yet.
        let small = &paths[RATHOLE].small;
        procs::wait_for(
            "rathole to forward",
            Duration::from_secs(20),
            || async move { load::probe(small).await.is_ok() },
        )
        .await
        .with_context(|| format!("see {}/rathole-*.log", d.display()))?;
        rathole_pids = pids.to_vec();
    }
    for p in &paths {
        for t in [&p.small, &p.one_mb]
            .into_iter()
            .chain(p.hundred_mb.as_ref())
        {
            load::probe(t)
                .await
                .with_context(|| format!("{} does not answer", p.name))?;
        }
    }

    if let Some(n) = args.profile {
        let gateway = &paths
            .iter()
            .find(|p| p.name == "gateway")
            .context("gateway path")?
            .small;
        let _ = load::sequential(gateway, 200, 0).await?;
        let callgrind = std::env::var_os("PONTE_BENCH_CALLGRIND").is_some();
        let control = |flag: &str| {
            for pid in [cloud.pid, connector_pid] {
                let _ = Command::new("callgrind_control")
                    .args([flag, &pid.to_string()])
                    .stdout(std::process::Stdio::null())
                    .status();
            }
        };
        if callgrind {
            control("-z");
        }
        let o = match args.saturate {
            true => load::saturate(gateway, s.conc, Duration::from_secs(n as u64)).await?,
            false => load::sequential(gateway, 0, n).await?,
        };
        if callgrind {
            control("-d");
        }
        println!(
            "profile: gateway GETs, {} ok, {} errors, p50 {:.3} ms, {:.1} s",
            o.ok,
            o.errors,
            ms(report::percentile(&o.latencies, 50.0)),
            o.elapsed.as_secs_f64()
        );
        drop(kids);
        dir.keep = args.keep;
        return Ok(());
    }

    let per_idle = match idle_n {
        0 => None,
        n => {
            let b = idle::measure(&http, &api, &admin_token, cloud.pid, n).await?;
            eprintln!(
                "ponte-bench: {n} idle connectors: {:.1} KiB each",
                b / 1024.0
            );
            // Let the cloud record them OFFLINE before the load starts.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((n, b / 1024.0))
        }
    };

    let mut measured: Vec<Measured> = paths.iter().map(|_| Measured::default()).collect();
    for round in 1..=s.rounds {
        eprintln!("ponte-bench: round {round}/{}", s.rounds);
        for (p, m) in paths.iter().zip(measured.iter_mut()) {
            let o = load::sequential(&p.small, s.warmup, s.requests).await?;
            m.c1_p50.push(ms(report::percentile(&o.latencies, 50.0)));
            m.c1_p99.push(ms(report::percentile(&o.latencies, 99.0)));
            m.c1_err += o.errors;
            note(p.name, "c=1", &o);
            kids.check_alive()?;
        }
        for (p, m) in paths.iter().zip(measured.iter_mut()) {
            let cpu = || {
                [
                    procs::cpu_seconds(&procs::family(nginx_pid)),
                    procs::cpu_seconds(&[cloud.pid]),
                    procs::cpu_seconds(&[connector_pid]),
                    procs::cpu_seconds(&[std::process::id()]),
                    procs::cpu_seconds(&rathole_pids),
                ]
            };
            let before = cpu();
            let o = load::saturate(&p.small, s.conc, s.duration).await?;
            let after = cpu();
            let answered = (o.ok + o.errors).max(1) as f64;
            m.c64_cpu.push(std::array::from_fn(|i| {
                (after[i] - before[i]) * 1e6 / answered
            }));
            m.c64_rate.push(o.rate());
            m.c64_p99.push(ms(report::percentile(&o.latencies, 99.0)));
            m.c64_err += o.errors;
            note(p.name, &format!("c={}", s.conc), &o);
            kids.check_alive()?;
        }
        for (p, m) in paths.iter().zip(measured.iter_mut()) {
            let Some(t) = &p.hundred_mb else { continue };
            let o = load::parallel(t, 1, 1).await?;
            m.big.push(o.ok as f64 * 100.0 / o.elapsed.as_secs_f64());
            m.big_err += o.errors;
            note(p.name, "100 MB", &o);
            kids.check_alive()?;
        }
        for (p, m) in paths.iter().zip(measured.iter_mut()) {
            let o = load::parallel(&p.one_mb, s.conc, 1).await?;
            m.par.push(o.ok as f64 / o.elapsed.as_secs_f64());
            m.par_err += o.errors;
            note(p.name, &format!("{} × 1 MB", s.conc), &o);
            kids.check_alive()?;
        }
    }

    // Memory after the runs: the cloud, the connector, nginx (master and workers).
    let mib = |b: Option<u64>| b.map(|b| b as f64 / MB);
    let nginx_rss: u64 = procs::family(nginx_pid)
        .iter()
        .filter_map(|&p| procs::rss(p, "VmRSS:"))
        .sum();
    let cloud_rss = mib(procs::rss(cloud.pid, "VmRSS:"));
    let cloud_peak = mib(procs::rss(cloud.pid, "VmHWM:"));
    let conn_rss = mib(procs::rss(connector_pid, "VmRSS:"));
    let conn_peak = mib(procs::rss(connector_pid, "VmHWM:"));
    let rathole_rss = rathole_pids.iter().map(|&p| mib(procs::rss(p, "VmRSS:")));
    let rathole_rss: Vec<Option<f64>> = rathole_rss.collect();

    let table = render(
        &paths,
        &measured,
        &s,
        Some(nginx_rss as f64 / MB),
        [cloud_rss, cloud_peak, conn_rss, conn_peak],
        rathole_rss.first().copied().flatten(),
        rathole_rss.get(1).copied().flatten(),
        per_idle,
    );
    println!(
        "\n{table}\n(best of {} rounds; MB = 2^20 bytes; c=1: {} requests after {} warm-up; c={}: {:.0} s; ! = the run had errors; total {:.0} s)",
        s.rounds,
        s.requests,
        s.warmup,
        s.conc,
        s.duration.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let errors: u64 = measured
        .iter()
        .map(|m| m.c1_err + m.c64_err + m.big_err + m.par_err)
        .sum();
    drop(kids);
    dir.keep = args.keep;
    if errors > 0 {
        dir.keep = true;
        bail!("{errors} requests failed (non-2xx or broken); the numbers above are not clean");
    }
    Ok(())
}
