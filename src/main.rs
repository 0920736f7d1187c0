fn main() {
    println!("symbiont");
}
