fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(barge_runtime::main(&a));
}
