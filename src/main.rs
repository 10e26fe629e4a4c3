fn main() {
    if let Err(err) = gpt::cli::run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
