//! The `vaart` binary.
fn main() {
    println!("vaart: not built yet");
}
