// rust-embed does not notice files added to web/: without this, a release
// binary could silently miss a new asset.
fn main() {
    println!("cargo:rerun-if-changed=web");
}
