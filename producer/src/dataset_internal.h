// Helpers shared by the datasets of encoded images (image folder, list
// file, WebDataset shards).
#ifndef DATAFEED_PRODUCER_DATASET_INTERNAL_H_
#define DATAFEED_PRODUCER_DATASET_INTERNAL_H_

#include <cstdint>
#include <string>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"
#include "datafeed/transport/status.h"

namespace datafeed {
namespace internal {

// Reads the whole file at `path` into out's encoded bytes. NotFound when it
// is gone, IOError for other failures, DataLoss for an empty file; messages
// name the path.
Status ReadFileInto(const std::string& path, Sample* out);

// Reads `n` bytes at `offset` of the open file `fd` into out's encoded
// bytes (a member of a tar shard). The error does not name the file: the
// caller adds that.
Status ReadRangeInto(int fd, uint64_t offset, size_t n, Sample* out);

// InvalidArgument naming `what` (e.g. "image folder data/train") for bad
// channels or a half-given or non-positive fixed size.
Status CheckImageDatasetOptions(const std::string& what, const ImageDatasetOptions& options);

// Mixes the options that change what a sample decodes to into `fp`.
void AddImageDatasetOptions(const ImageDatasetOptions& options, Fingerprinter* fp);

// Whether `name` ends in one of torchvision's IMG_EXTENSIONS (.jpg .jpeg
// .png .ppm .bmp .pgm .tif .tiff .webp), any case.
bool HasImageExtension(const std::string& name);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_DATASET_INTERNAL_H_
