//! The template adapter (`examples/template.rs`) compiles and passes the conformance
//! suite, so that what users copy is known to work.

#[allow(
    unreachable_pub,
    reason = "the example is written as a crate of its own; here it is a module"
)]
#[path = "../examples/template.rs"]
mod template;

#[test]
fn the_template_adapter_passes_the_conformance_suite() {
    template::main();
}
