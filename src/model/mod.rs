//! Model folders (manifest + graphs), backends, tokenizer, prompt, generation, Depth API.
