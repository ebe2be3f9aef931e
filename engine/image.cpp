// Image decoding (JPEG through libturbojpeg's TurboJPEG 2 API, PNG through libpng), PNG encoding,
// and image <-> tensor conversion. See image.h for the conventions.
//
// libpng reports errors by longjmp. Every setjmp here sits in a small function whose locals are
// plain values that are not modified after the setjmp, so nothing with a destructor is skipped
// and no local is read in an indeterminate state after the jump; the C++ objects (pixel buffers,
// row pointer arrays, messages) live in the callers.
#include "engine/image.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "engine/context.h"
#include "engine/ops.h"

namespace sal {

Image::Image(int w, int h, int c) : width(w), height(h), channels(c) {
  SAL_CHECK(w > 0 && h > 0, "Image: size ", w, "x", h, " is not positive");
  SAL_CHECK(c == 1 || c == 3, "Image: ", c, " channels (1 or 3 supported)");
  SAL_CHECK(int64_t{w} * h <= kMaxImagePixels, "Image: ", w, "x", h, " is larger than ", kMaxImagePixels, " pixels");
  pixels.assign(static_cast<size_t>(w) * h * c, 0);
}

ImageFormat sniff_image_format(const uint8_t* data, size_t size) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::JPEG;
  if (size >= 8 && std::memcmp(data, png_sig, 8) == 0) return ImageFormat::PNG;
  return ImageFormat::Unknown;
}

namespace {

std::string first_bytes_hex(const uint8_t* data, size_t size) {
  if (size == 0) return "the data is empty";
  std::string s = "starts with";
  char buf[8];
  for (size_t i = 0; i < std::min<size_t>(size, 8); ++i) {
    std::snprintf(buf, sizeof buf, " %02x", data[i]);
    s += buf;
  }
  return s;
}

// The most pixels a complete file of `bytes` bytes can decode to (the decoders require complete data: a
// truncated scan is an error). JPEG: each 8x8 block of a full-resolution component costs at least one bit
// of Huffman-coded data (its DC difference), so at most 512 pixels per byte; PNG: deflate expands at most
// 1032:1 and a 1-bit gray pixel is 1/8 byte, so at most 8256 pixels per byte. Twice that is allowed, and
// any image up to 4M pixels. A header claiming more is corrupt: checked before any pixel buffer is
// allocated, this keeps a 100-byte file from making the decoder allocate gigabytes (found by
// tests/fuzz/fuzz_image.cpp; arithmetic-coded JPEGs could in principle beat the bound, only if nearly flat).
int64_t max_plausible_pixels(const char* format, size_t bytes) {
  const int64_t per_byte = std::string(format) == "PNG" ? 2 * 8256 : 2 * 512;
  return std::max<int64_t>(int64_t{1} << 22, per_byte * static_cast<int64_t>(std::min<size_t>(bytes, size_t{1} << 40)));
}

void check_decoded_size(int64_t w, int64_t h, const std::string& name, const char* format, size_t bytes) {
  SAL_CHECK(w > 0 && h > 0, name, ": corrupt ", format, ": size ", w, "x", h);
  SAL_CHECK(w * h <= kMaxImagePixels, name, ": ", format, " of ", w, "x", h, " is larger than the limit of ",
            kMaxImagePixels, " pixels");
  SAL_CHECK(w * h <= max_plausible_pixels(format, bytes), name, ": corrupt ", format, ": the header says ", w, "x",
            h, " pixels, more than ", bytes, " bytes of ", format, " data can hold");
}

// ---------------------------------------------------------------- JPEG

// One TurboJPEG decompressor per thread, made on first use (decoding runs in parallel loaders).
// A decode that fails can leave the handle mid-stream (the next file then reports "two SOI
// markers"), so a failure destroys it and the next decode makes a fresh one.
struct TjDecompressor {
  tjhandle handle = nullptr;
  ~TjDecompressor() { reset(); }
  void reset() {
    if (handle) tjDestroy(handle);
    handle = nullptr;
  }
};

thread_local TjDecompressor t_decompressor;

tjhandle thread_decompressor() {
  if (!t_decompressor.handle) t_decompressor.handle = tjInitDecompress();
  SAL_CHECK(t_decompressor.handle, "libturbojpeg: cannot create a decompressor: ", tjGetErrorStr2(nullptr));
  return t_decompressor.handle;
}

// A complete JPEG ends with the end-of-image marker FF D9 (trailing zero padding is tolerated).
bool ends_with_eoi(const uint8_t* data, size_t size) {
  while (size > 2 && data[size - 1] == 0) --size;
  return size >= 2 && data[size - 2] == 0xff && data[size - 1] == 0xd9;
}

// A failed decode is called truncated when libjpeg saw the data end early or the end-of-image
// marker is missing, corrupt otherwise; libjpeg-turbo's own message is kept either way.
[[noreturn]] void jpeg_fail(tjhandle h, const std::string& name, const uint8_t* data, size_t size) {
  std::string msg = tjGetErrorStr2(h);
  t_decompressor.reset();
  if (msg.find("Premature end") != std::string::npos || !ends_with_eoi(data, size))
    fail(name, ": truncated JPEG (", size, " bytes, no end-of-image marker; libjpeg-turbo: ", msg, ")");
  fail(name, ": corrupt JPEG (libjpeg-turbo: ", msg, ")");
}

// PIL's MULDIV255: a * b / 255 rounded, in integers.
inline int muldiv255(int a, int b) {
  int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

}  // namespace

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  SAL_CHECK(sniff_image_format(data, size) == ImageFormat::JPEG, name, ": not a JPEG file (",
            first_bytes_hex(data, size), ")");
  tjhandle h = thread_decompressor();
  int w = 0, ht = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(h, data, static_cast<unsigned long>(size), &w, &ht, &subsamp, &colorspace) != 0)
    jpeg_fail(h, name, data, size);
  if (w <= 0 || ht <= 0) {  // the headers ended before a frame header (SOF)
    t_decompressor.reset();
    fail(name, ends_with_eoi(data, size) ? ": corrupt JPEG (no frame header before the end of the data)"
                                         : ": truncated JPEG (the data ends before the frame header)");
  }
  check_decoded_size(w, ht, name, "JPEG", size);
  Image img(w, ht, 3);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    // libjpeg returns the stored CMYK values; like PIL, read them with Adobe's convention (stored
    // inverted: s = 255 - ink) and convert as PIL's cmyk2rgb does: R = (255-K) - C*(255-K)/255.
    std::vector<uint8_t> cmyk(static_cast<size_t>(w) * ht * 4);
    if (tjDecompress2(h, data, static_cast<unsigned long>(size), cmyk.data(), w, 0, ht, TJPF_CMYK, 0) != 0)
      jpeg_fail(h, name, data, size);
    const size_t n = static_cast<size_t>(w) * ht;
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* s = &cmyk[4 * i];
      int nk = s[3];  // 255 - K with K = 255 - s[3]
      for (int c = 0; c < 3; ++c)
        img.pixels[3 * i + c] = static_cast<uint8_t>(std::clamp(nk - muldiv255(255 - s[c], nk), 0, 255));
    }
    return img;
  }
  // Gray and YCbCr/RGB JPEGs: libjpeg converts to RGB itself.
  if (tjDecompress2(h, data, static_cast<unsigned long>(size), img.pixels.data(), w, 0, ht, TJPF_RGB, 0) != 0)
    jpeg_fail(h, name, data, size);
  return img;
}

// ---------------------------------------------------------------- PNG decoding

namespace {

struct PngReadState {
  const uint8_t* data;
  size_t size;
  size_t pos;
  std::string error;  // the first error libpng or the reader reported
};

void png_read_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngReadState*>(png_get_error_ptr(png));
  if (st->error.empty()) st->error = msg;
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (n > st->size - st->pos) {
    if (st->error.empty())
      st->error = cat("truncated PNG: ", n, " bytes needed at offset ", st->pos, " but the data ends at ", st->size);
    png_longjmp(png, 1);
  }
  std::memcpy(out, st->data + st->pos, n);
  st->pos += n;
}

// Reads the header and sets the transformations to 8-bit RGB. False on a libpng error.
bool png_read_header(png_structp png, png_infop info, png_uint_32* w, png_uint_32* h, size_t* rowbytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(png, info, w, h, &bit_depth, &color_type, nullptr, nullptr, nullptr);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);
  // Transparency, as an alpha channel or a tRNS chunk (which palette expansion would turn into
  // alpha), is dropped: the colour values are kept as they are.
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  if (trns) png_set_tRNS_to_alpha(png);
  if ((color_type & PNG_COLOR_MASK_ALPHA) || trns) png_set_strip_alpha(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Reads all rows (every interlace pass) and the chunks after the image data. False on a libpng error.
bool png_read_pixels(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

struct PngReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngReadGuard() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

}  // namespace

Image decode_png(const uint8_t* data, size_t size, const std::string& name) {
  SAL_CHECK(sniff_image_format(data, size) == ImageFormat::PNG, name, ": not a PNG file (",
            first_bytes_hex(data, size), ")");
  PngReadState st{data, size, 0, {}};
  PngReadGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_read_error, png_ignore_warning);
  SAL_CHECK(g.png, name, ": libpng cannot create a reader");
  g.info = png_create_info_struct(g.png);
  SAL_CHECK(g.info, name, ": libpng cannot create an info struct");
  png_set_read_fn(g.png, &st, png_read_bytes);

  png_uint_32 w = 0, h = 0;
  size_t rowbytes = 0;
  if (!png_read_header(g.png, g.info, &w, &h, &rowbytes)) fail(name, ": corrupt PNG: ", st.error);
  check_decoded_size(w, h, name, "PNG", size);
  SAL_CHECK(rowbytes == size_t{w} * 3, name, ": PNG rows are ", rowbytes, " bytes after conversion to RGB, expected ",
            size_t{w} * 3);
  Image img(static_cast<int>(w), static_cast<int>(h), 3);
  std::vector<png_bytep> rows(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.pixels.data() + size_t{y} * rowbytes;
  if (!png_read_pixels(g.png, g.info, rows.data())) fail(name, ": corrupt PNG: ", st.error);
  return img;
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  switch (sniff_image_format(data, size)) {
    case ImageFormat::JPEG:
      return decode_jpeg(data, size, name);
    case ImageFormat::PNG:
      return decode_png(data, size, name);
    case ImageFormat::Unknown:
      break;
  }
  fail(name, ": unsupported image format (", first_bytes_hex(data, size), "; JPEG and PNG are supported)");
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SAL_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(sb.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(sb.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      fail(path, ": read failed at byte ", done, " of ", bytes.size(), ": ", n == 0 ? "unexpected end of file" : std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

Image read_image(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

// ---------------------------------------------------------------- PNG encoding

namespace {

struct PngWriteState {
  std::vector<uint8_t>* out;
  std::string error;
};

void png_write_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngWriteState*>(png_get_error_ptr(png));
  if (st->error.empty()) st->error = msg;
  png_longjmp(png, 1);
}

void png_write_bytes(png_structp png, png_bytep data, png_size_t n) {
  auto* st = static_cast<PngWriteState*>(png_get_io_ptr(png));
  st->out->insert(st->out->end(), data, data + n);
}

void png_flush_nothing(png_structp) {}

bool png_write_all(png_structp png, png_infop info, png_uint_32 w, png_uint_32 h, int color_type, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, w, h, 8, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

struct PngWriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngWriteGuard() { png_destroy_write_struct(&png, info ? &info : nullptr); }
};

}  // namespace

std::vector<uint8_t> encode_png(const Image& image, int level) {
  SAL_CHECK(level >= 0 && level <= 9, "encode_png: compression level ", level, " is outside 0-9");
  SAL_CHECK(image.channels == 1 || image.channels == 3, "encode_png: ", image.channels,
            " channels (1 = gray or 3 = RGB supported)");
  SAL_CHECK(image.width > 0 && image.height > 0, "encode_png: image size ", image.width, "x", image.height,
            " is not positive");
  const size_t rowbytes = static_cast<size_t>(image.width) * image.channels;
  SAL_CHECK(image.pixels.size() == rowbytes * image.height, "encode_png: ", image.width, "x", image.height, "x",
            image.channels, " image holds ", image.pixels.size(), " bytes");
  std::vector<uint8_t> out;
  PngWriteState st{&out, {}};
  PngWriteGuard g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, png_write_error, png_ignore_warning);
  SAL_CHECK(g.png, "encode_png: libpng cannot create a writer");
  g.info = png_create_info_struct(g.png);
  SAL_CHECK(g.info, "encode_png: libpng cannot create an info struct");
  png_set_write_fn(g.png, &st, png_write_bytes, png_flush_nothing);
  png_set_compression_level(g.png, level);
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (int y = 0; y < image.height; ++y)
    rows[static_cast<size_t>(y)] = const_cast<png_bytep>(image.pixels.data() + static_cast<size_t>(y) * rowbytes);
  int color_type = image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
  if (!png_write_all(g.png, g.info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height),
                     color_type, rows.data()))
    fail("encode_png: libpng: ", st.error);
  return out;
}

void write_png(const std::string& path, const Image& image, int level) {
  std::vector<uint8_t> bytes = encode_png(image, level);
  FILE* f = std::fopen(path.c_str(), "wb");
  SAL_CHECK(f, path, ": cannot create: ", std::strerror(errno));
  size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  int werr = n == bytes.size() ? 0 : errno;
  if (std::fclose(f) != 0 && werr == 0) werr = errno ? errno : EIO;
  if (n != bytes.size() || werr != 0) fail(path, ": write failed: ", std::strerror(werr ? werr : EIO));
}

// ---------------------------------------------------------------- tensors

Tensor image_to_tensor(const Image& image) {
  const int C = image.channels, W = image.width, H = image.height;
  SAL_CHECK(C == 1 || C == 3, "image_to_tensor: ", C, " channels");
  SAL_CHECK(image.pixels.size() == static_cast<size_t>(W) * H * C, "image_to_tensor: ", W, "x", H, "x", C,
            " image holds ", image.pixels.size(), " bytes");
  Tensor t = Tensor::empty({C, H, W}, DType::F32, Device::CPU);  // [C,H,W]
  float* out = t.data<float>();
  const uint8_t* in = image.pixels.data();
  const size_t plane = static_cast<size_t>(W) * H;
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c) out[c * plane + i] = static_cast<float>(in[i * C + c]) * (1.0f / 255.0f);
  return t;
}

Tensor image_to_tensor(const Image& image, int64_t out_h, int64_t out_w) {
  SAL_CHECK(out_h > 0 && out_w > 0, "image_to_tensor: output size ", out_h, "x", out_w, " is not positive");
  Tensor t = image_to_tensor(image);
  if (out_h == image.height && out_w == image.width) return t;
  Ctx ctx(Device::CPU);
  Tensor r = resize_bilinear(ctx, t.reshape({1, image.channels, image.height, image.width}), out_h, out_w);
  return r.reshape({image.channels, out_h, out_w});
}

Image tensor_to_image(const Tensor& chw) {
  SAL_CHECK(!chw.on_cuda() && chw.dtype() == DType::F32, "tensor_to_image: expects an f32 CPU tensor, got ",
            chw.desc());
  SAL_CHECK(chw.ndim() == 3 || (chw.ndim() == 4 && chw.dim(0) == 1), "tensor_to_image: expects [C,H,W] or [1,C,H,W], got ",
            chw.desc());
  const int off = chw.ndim() - 3;
  const int64_t C = chw.dim(off), H = chw.dim(off + 1), W = chw.dim(off + 2);
  SAL_CHECK(C == 1 || C == 3, "tensor_to_image: ", C, " channels (1 or 3 supported) in ", chw.desc());
  Image img(static_cast<int>(W), static_cast<int>(H), static_cast<int>(C));
  const float* in = chw.data<float>();
  const size_t plane = static_cast<size_t>(W * H);
  for (size_t i = 0; i < plane; ++i)
    for (int64_t c = 0; c < C; ++c) {
      float v = in[c * plane + i];
      v = std::isnan(v) ? 0.0f : std::clamp(v, 0.0f, 1.0f);
      img.pixels[i * C + c] = static_cast<uint8_t>(std::lround(v * 255.0f));
    }
  return img;
}

}  // namespace sal
