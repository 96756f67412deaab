//! Compiles `csrc/jpeg_scan.c`, the few lines of C that reach into libjpeg's internals for
//! zerofeed's Huffman decoder, against the headers of the libjpeg that `mozjpeg-sys` builds
//! (it exports their folders as `DEP_JPEG_INCLUDE`), so that the struct layouts agree.

fn main() {
    println!("cargo:rerun-if-changed=csrc/jpeg_scan.c");
    let include = std::env::var_os("DEP_JPEG_INCLUDE")
        .expect("mozjpeg-sys exports DEP_JPEG_INCLUDE (its `links = \"jpeg\"` metadata)");
    let mut build = cc::Build::new();
    for dir in std::env::split_paths(&include) {
        build.include(dir);
    }
    build
        .file("csrc/jpeg_scan.c")
        .warnings(true)
        .compile("zerofeed_jpeg_scan");
}
