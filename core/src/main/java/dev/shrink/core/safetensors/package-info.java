/**
 * Reading and writing safetensors files (the Hugging Face weight format) and model folders.
 *
 * <p>File layout: an 8-byte little-endian u64 header length H, H bytes of UTF-8 JSON, then the
 * data. The JSON maps each tensor name to {@code {"dtype", "shape", "data_offsets": [begin, end]}}
 * with offsets relative to the first byte after the header; data is row-major little-endian.
 * An optional {@code "__metadata__"} entry maps strings to strings.
 *
 * <ul>
 *   <li>{@link dev.shrink.core.safetensors.SafetensorsFile}: one memory-mapped, fully validated file.</li>
 *   <li>{@link dev.shrink.core.safetensors.WeightStore}: all weights of a model folder (single file or
 *       shards with {@code model.safetensors.index.json}).</li>
 *   <li>{@link dev.shrink.core.safetensors.SafetensorsWriter}: atomic writes of one file or a sharded model.</li>
 * </ul>
 *
 * <p>Every problem with the input is reported as a {@link dev.shrink.core.ShrinkException} whose
 * one-line message names the file and the problem.
 */
package dev.shrink.core.safetensors;
