fn main() -> std::process::ExitCode {
    gpt::cli::main()
}
