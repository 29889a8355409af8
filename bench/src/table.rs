//! The table a run prints: every measured path beside nginx, nginx×2 and rathole, with
//! the ratios and the goals.

use crate::load::Outcome;
use crate::report::{Better, Cell, Row};
use crate::{
    report, Measured, PathTargets, Settings, GATEWAY, NGINX, PROXY_HTTP, RATHOLE, TWO_HOPS,
};
use std::time::Duration;

pub(crate) fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

pub(crate) fn note(path: &str, what: &str, o: &Outcome) {
    if o.errors > 0 {
        let by: Vec<String> = o
            .failed
            .iter()
            .map(|(s, n)| match s {
                0 => format!("{n} short or unchecked 2xx"),
                1 => format!("{n} broken connections"),
                s => format!("{n} × {s}"),
            })
            .collect();
        eprintln!(
            "ponte-bench: {path} {what}: {} errors ({}), {} ok",
            o.errors,
            by.join(", "),
            o.ok
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn render(
    paths: &[PathTargets],
    m: &[Measured],
    s: &Settings,
    nginx_rss: Option<f64>,
    [cloud_rss, cloud_peak, conn_rss, conn_peak]: [Option<f64>; 4],
    rathole_server_rss: Option<f64>,
    rathole_client_rss: Option<f64>,
    per_idle: Option<(usize, f64)>,
) -> String {
    let cols: Vec<&str> = paths.iter().map(|p| p.name).collect();
    let gw = GATEWAY;
    let has_rathole = paths.len() > RATHOLE;
    // The ratio columns: the yardstick (one nginx proxy), then the two with a
    // tunnel's two hops.
    let mut against = vec![(NGINX, "gateway / nginx"), (TWO_HOPS, "gateway / nginx×2")];
    if has_rathole {
        against.push((RATHOLE, "gateway / rathole"));
    }
    let ratios: Vec<Option<(usize, usize)>> = against.iter().map(|&(i, _)| Some((gw, i))).collect();
    let row = |label: String,
               decimals: usize,
               better: Better,
               get: &dyn Fn(&Measured) -> (&Vec<f64>, u64)| Row {
        label,
        decimals,
        cells: m
            .iter()
            .map(|x| {
                let (v, errs) = get(x);
                Cell {
                    value: report::best(v, better),
                    errors: errs > 0,
                }
            })
            .collect(),
        ratios: ratios.clone(),
    };
    let only = |label: &str, decimals, at: &[(usize, Option<f64>)], ratios| {
        let mut cells = vec![Cell::default(); cols.len()];
        for &(i, v) in at {
            if i < cells.len() {
                cells[i] = Cell::of(v);
            }
        }
        Row {
            label: label.into(),
            decimals,
            cells,
            ratios,
        }
    };
    let c = s.conc;
    let mut rows = vec![
        row("c=1 small GET p50 (ms)".into(), 3, Better::Lower, &|x| {
            (&x.c1_p50, x.c1_err)
        }),
        row("c=1 small GET p99 (ms)".into(), 3, Better::Lower, &|x| {
            (&x.c1_p99, x.c1_err)
        }),
        row(format!("c={c} small GET req/s"), 0, Better::Higher, &|x| {
            (&x.c64_rate, x.c64_err)
        }),
        row(
            format!("c={c} small GET p99 (ms)"),
            2,
            Better::Lower,
            &|x| (&x.c64_p99, x.c64_err),
        ),
        row("100 MB download (MB/s)".into(), 0, Better::Higher, &|x| {
            (&x.big, x.big_err)
        }),
        row(
            format!("{c} parallel 1 MB (MB/s)"),
            0,
            Better::Higher,
            &|x| (&x.par, x.par_err),
        ),
    ];
    // CPU per request: the lowest of the rounds, per process (whatever a path does not
    // pass through stays near 0, so the columns add up to the path's whole cost).
    let cpu_rows = [
        "nginx (origin + proxies)",
        "ponte serve",
        "ponte-connector",
        "load generator",
        "rathole (server + client)",
    ];
    for (i, what) in cpu_rows.into_iter().enumerate() {
        if i == 4 && !has_rathole {
            continue;
        }
        rows.push(Row {
            label: format!("c={c} CPU per request, {what} (µs)"),
            decimals: 1,
            cells: m
                .iter()
                .map(|x| Cell {
                    value: report::best(
                        &x.c64_cpu.iter().map(|r| r[i]).collect::<Vec<_>>(),
                        Better::Lower,
                    ),
                    errors: x.c64_err > 0,
                })
                .collect(),
            ratios: vec![],
        });
    }
    rows.extend([
        only(
            "server RSS after the runs (MiB)",
            1,
            &[
                (NGINX, nginx_rss),
                (gw, cloud_rss),
                (PROXY_HTTP, cloud_rss),
                (RATHOLE, rathole_server_rss),
            ],
            vec![Some((gw, NGINX)), None, Some((gw, RATHOLE))],
        ),
        only(
            "server peak RSS (MiB)",
            1,
            &[(gw, cloud_peak), (PROXY_HTTP, cloud_peak)],
            vec![],
        ),
        only(
            "connector RSS after / peak (MiB)",
            1,
            &[(gw, conn_rss), (PROXY_HTTP, conn_peak)],
            vec![],
        ),
    ]);
    if has_rathole {
        rows.push(only(
            "tunnel client RSS after the runs (MiB)",
            1,
            &[(gw, conn_rss), (RATHOLE, rathole_client_rss)],
            vec![None, None, Some((gw, RATHOLE))],
        ));
    }
    if let Some((n, kib)) = per_idle {
        rows.push(only(
            &format!("cloud RSS per idle connector, {n} connected (KiB)"),
            1,
            &[(gw, Some(kib))],
            vec![],
        ));
    }
    let headers: Vec<&str> = against.iter().map(|&(_, h)| h).collect();
    let mut out = report::markdown(&cols, &headers, &rows);
    let q = |i: usize, base: usize| {
        report::ratio(
            report::best(&pick(&m[gw], i), better_of(i)),
            report::best(&pick(&m[base], i), better_of(i)),
        )
    };
    let goals = |out: &mut String, base: usize| {
        out.push_str(&report::goal(
            "c=1 p50 ratio",
            q(0, base),
            1.5,
            Better::Lower,
        ));
        out.push('\n');
        out.push_str(&report::goal(
            &format!("c={c} req/s ratio"),
            q(2, base),
            0.8,
            Better::Higher,
        ));
        out.push('\n');
        out.push_str(&report::goal(
            "100 MB MB/s ratio",
            q(4, base),
            1.0,
            Better::Higher,
        ));
        out.push('\n');
    };
    out.push_str("\nGoals (gateway against nginx, this run):\n");
    goals(&mut out, NGINX);
    match per_idle {
        Some((n, kib)) => {
            out.push_str(&report::goal(
                &format!("cloud RSS per idle connector, KiB ({n} raw peers on ponte serve)"),
                Some(kib),
                32.0,
                Better::Lower,
            ));
            out.push('\n');
        }
        None => out.push_str(
            "- cloud RSS per idle connector ≤ 32 KiB: not measured (--idle N), see `cargo bench -p ponte-tests --bench tunnel`\n",
        ),
    }
    // Not the goals: the same limits against yardsticks with two hops.
    out.push_str("\nThe same limits against two hops (nginx proxying to the nginx proxy):\n");
    goals(&mut out, TWO_HOPS);
    if has_rathole {
        out.push_str("\nThe same limits against rathole (a TCP tunnel: server and client):\n");
        goals(&mut out, RATHOLE);
    }
    out
}

pub(crate) fn better_of(i: usize) -> Better {
    match i {
        2 | 4 | 5 => Better::Higher,
        _ => Better::Lower,
    }
}

pub(crate) fn pick(m: &Measured, i: usize) -> Vec<f64> {
    match i {
        0 => m.c1_p50.clone(),
        1 => m.c1_p99.clone(),
        2 => m.c64_rate.clone(),
        3 => m.c64_p99.clone(),
        4 => m.big.clone(),
        _ => m.par.clone(),
    }
}
