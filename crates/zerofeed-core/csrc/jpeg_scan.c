/*
 * The two things zerofeed's Huffman decoder needs from libjpeg's internals, which the
 * public API does not expose: the layout of the (single) scan, and the entropy decoder's
 * `decode_mcu` method, which it replaces. Built against the headers of the very libjpeg
 * that mozjpeg-sys compiles (its DEP_JPEG_INCLUDE), so the struct layouts always agree.
 */
#include <stddef.h>
#include <stdio.h>

#include "jpeglib.h"
#include "jpegint.h"

#if JPEG_LIB_VERSION >= 70
#define ZF_SCALED_SIZE(comp) ((comp)->DCT_h_scaled_size)
#else
#define ZF_SCALED_SIZE(comp) ((comp)->DCT_scaled_size)
#endif

/* One block of an MCU, as zerofeed's decoder reads it. Mirrored in decode/huffman.rs. */
struct zf_block_plan {
  const JHUFF_TBL *dc_table;
  const JHUFF_TBL *ac_table;
  int component;   /* index into the scan's components: whose DC predictor */
  int dc_needed;   /* the DC value is stored (the component is output) */
  int ac_needed;   /* the AC values are stored (and not a 1/8-scale decode) */
};

struct zf_scan_plan {
  int blocks_in_mcu;
  int comps_in_scan;
  struct zf_block_plan blocks[D_MAX_BLOCKS_IN_MCU];
};

/*
 * Fills `plan` and returns 1 when the image is a single baseline Huffman scan without
 * restart markers, the case zerofeed decodes itself; returns 0 otherwise (libjpeg keeps
 * its own decoder). Call after jpeg_start_decompress, before any scanline is read.
 */
int zf_jpeg_scan_plan(j_decompress_ptr cinfo, struct zf_scan_plan *plan)
{
  int blkn;

  if (cinfo->progressive_mode || cinfo->arith_code || cinfo->restart_interval != 0 ||
      cinfo->buffered_image || cinfo->data_precision != 8 ||
      cinfo->comps_in_scan != cinfo->num_components || cinfo->comps_in_scan < 1 ||
      cinfo->blocks_in_MCU < 1 || cinfo->blocks_in_MCU > D_MAX_BLOCKS_IN_MCU ||
      cinfo->entropy == NULL)
    return 0;
  plan->blocks_in_mcu = cinfo->blocks_in_MCU;
  plan->comps_in_scan = cinfo->comps_in_scan;
  for (blkn = 0; blkn < cinfo->blocks_in_MCU; blkn++) {
    int ci = cinfo->MCU_membership[blkn];
    jpeg_component_info *comp;

    if (ci < 0 || ci >= cinfo->comps_in_scan)
      return 0;
    comp = cinfo->cur_comp_info[ci];
    if (comp->dc_tbl_no < 0 || comp->dc_tbl_no >= NUM_HUFF_TBLS ||
        comp->ac_tbl_no < 0 || comp->ac_tbl_no >= NUM_HUFF_TBLS)
      return 0;
    plan->blocks[blkn].dc_table = cinfo->dc_huff_tbl_ptrs[comp->dc_tbl_no];
    plan->blocks[blkn].ac_table = cinfo->ac_huff_tbl_ptrs[comp->ac_tbl_no];
    if (plan->blocks[blkn].dc_table == NULL || plan->blocks[blkn].ac_table == NULL)
      return 0;
    plan->blocks[blkn].component = ci;
    plan->blocks[blkn].dc_needed = comp->component_needed ? 1 : 0;
    plan->blocks[blkn].ac_needed = (comp->component_needed && ZF_SCALED_SIZE(comp) > 1) ? 1 : 0;
  }
  return 1;
}

/* Makes libjpeg call `decode_mcu` for every MCU of the scan from now on. */
void zf_jpeg_replace_decode_mcu(j_decompress_ptr cinfo,
                                boolean (*decode_mcu)(j_decompress_ptr, JBLOCKROW *))
{
  cinfo->entropy->decode_mcu = decode_mcu;
}

/*
 * The MCU columns whose blocks libjpeg inverse-transforms (all but those jpeg_crop_scanline
 * cut off), and the MCUs in a row. Call after jpeg_crop_scanline, if it is called at all.
 */
void zf_jpeg_mcu_columns(j_decompress_ptr cinfo, JDIMENSION *first, JDIMENSION *last,
                         JDIMENSION *per_row)
{
  *first = cinfo->master->first_iMCU_col;
  *last = cinfo->master->last_iMCU_col;
  *per_row = cinfo->MCUs_per_row;
}
