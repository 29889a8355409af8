//! `ponte-devsim`: one simulated turnstile on a port, for trying Ponte by hand.

use clap::Parser;

/// A simulated ControlID-style turnstile web UI (login admin / admin).
#[derive(Debug, Parser)]
#[command(name = "ponte-devsim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PONTE_DEVSIM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The device's name, shown on its pages.
    #[arg(long, env = "PONTE_DEVSIM_NAME", default_value = "Catraca Demo")]
    name: String,
    /// Be a POS-like host instead (quotes approved under /approve/, a private /admin).
    #[arg(long, env = "PONTE_DEVSIM_POS")]
    pos: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ponte-devsim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(69);
        }
    };
    let served = match args.pos {
        true => ponte_devsim::Devsim::serve_pos(listener, &args.name),
        false => ponte_devsim::Devsim::serve(listener, &args.name),
    };
    let sim = match served {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ponte-devsim: {e}");
            return std::process::ExitCode::from(69);
        }
    };
    match args.pos {
        true => println!("{} (POS) listening on {}", sim.name(), sim.base_url()),
        false => println!(
            "{} listening on {} (login admin / admin)",
            sim.name(),
            sim.base_url()
        ),
    }
    tokio::select! {
        () = sim.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    std::process::ExitCode::SUCCESS
}
