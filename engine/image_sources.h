// The images a tool is pointed at: image files, folders of them, and tar files (WebDataset shards, or
// any tar of images such as ../shared/data/cifar10/test.tar), listed in a fixed order without decoding.
//
//   file:   one image (any name; the decoder sniffs the format)
//   folder: its *.jpg, *.jpeg, *.png files (case-insensitive; not recursive), sorted by name
//   *.tar:  its entries named *.jpg / *.jpeg / *.png in archive order; a WebDataset KEY.cls entry
//           (a decimal class index) gives the label of the image with the same KEY
// Each source gets a display name (the path, or "<tar>:<entry>"), a key for lookups in a label table
// (the file name, or the entry name inside the tar) and a unique output stem (the file name without
// its extension, '/' turned into '_', "_2", "_3", ... appended to repeats). Errors in listing (a
// missing path, a corrupt tar header, a bad .cls) throw, naming the path; reading the bytes of one
// source is separate (read_source), so a tool can report an unreadable image and go on.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/tar.h"

namespace sal {

struct ImageSource {
  std::string name;  // for messages and outputs
  std::string key;   // file name (folder/file) or entry name (tar)
  std::string stem;  // unique output file stem
  int label = -1;    // from a WebDataset .cls entry; -1 when unknown
  std::string path;  // the file (file/folder sources)
  std::shared_ptr<const TarReader> tar;  // tar sources
  TarEntry entry;
};

std::vector<ImageSource> list_image_sources(const std::vector<std::string>& inputs);
// The encoded bytes of one source (errors name it).
std::vector<uint8_t> read_source(const ImageSource& source);

}  // namespace sal
