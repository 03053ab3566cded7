use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = tapfwd::cli::Cli::parse();
    std::process::exit(tapfwd::cli::main(cli).await);
}
