// liblzf (Debian liblzf-dev): the LZF codec h5py and anndata use for `compression="lzf"`.
// Imported only by HDF5IO, which registers it as HDF5 filter 32000.
#include <liblzf/lzf.h>
