//! `vaart-bench`: load generator and machine-limit measurements.
fn main() {
    println!("vaart-bench: not built yet");
}
