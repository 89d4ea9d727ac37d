//! A component that is not a format plugin: it exports an unrelated function
//! instead of the `artifact-keeper:format/handler` interface.

wit_bindgen::generate!({
    inline: "
        package wasmplug-test:wrong-world;
        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
    world: "greeter",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
