use super::*;

fn png_bytes(
    width: u32,
    height: u32,
    color: ::png::ColorType,
    depth: ::png::BitDepth,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = ::png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(data).unwrap();
    }
    out
}

fn rgb_png() -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 7 % 251) as u8).collect();
    (
        png_bytes(6, 4, ::png::ColorType::Rgb, ::png::BitDepth::Eight, &data),
        data,
    )
}

#[test]
fn png_round_trips_and_crops() {
    let (bytes, data) = rgb_png();
    let info = probe(&bytes).unwrap();
    assert_eq!(
        (info.height, info.width, info.format),
        (4, 6, ImageFormat::Png)
    );
    let full = decode(&bytes, &DecodeRequest::full(ColorMode::Rgb)).unwrap();
    assert_eq!(
        (full.height, full.width, full.channels, full.scale_denom),
        (4, 6, 3, 1)
    );
    assert_eq!(full.pixels, data);
    let region = Region {
        top: 1,
        left: 2,
        height: 2,
        width: 3,
    };
    let part = decode(
        &bytes,
        &DecodeRequest {
            region: Some(region),
            max_scale_denom: 8,
            ..DecodeRequest::full(ColorMode::Rgb)
        },
    )
    .unwrap();
    assert_eq!(
        (part.origin_top, part.origin_left, part.height, part.width),
        (1, 2, 2, 3)
    );
    assert_eq!(&part.pixels[..9], &data[(6 + 2) * 3..(6 + 5) * 3]);
    let gray = decode(&bytes, &DecodeRequest::full(ColorMode::Gray)).unwrap();
    assert_eq!(gray.pixels[0], luma(data[0], data[1], data[2]));
}

#[test]
fn sixteen_bit_png_rounds_to_nearest_level() {
    let samples: [u16; 4] = [0, 128, 129, 65535];
    let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = png_bytes(
        4,
        1,
        ::png::ColorType::Grayscale,
        ::png::BitDepth::Sixteen,
        &data,
    );
    let out = decode(&bytes, &DecodeRequest::full(ColorMode::Gray)).unwrap();
    // round(v / 257): 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1
    assert_eq!(out.pixels, [0, 0, 1, 255]);
}

#[test]
fn bad_input_is_typed() {
    let full = DecodeRequest::full(ColorMode::Rgb);
    assert_eq!(decode(b"", &full), Err(DecodeError::Empty));
    assert!(matches!(
        decode(b"hello, world\n", &full),
        Err(DecodeError::NotAnImage { .. })
    ));
    assert!(matches!(
        decode(b"GIF89a\x01\0\x01\0", &full),
        Err(DecodeError::Unsupported { .. })
    ));
    assert!(matches!(
        decode(&[0xFF, 0xD8], &full),
        Err(DecodeError::Truncated { .. })
    ));
    let (png, _) = rgb_png();
    assert!(matches!(
        decode(&png[..png.len() - 20], &full),
        Err(DecodeError::Truncated { .. })
    ));
    let mut bad_crc = png.clone();
    let idat = bad_crc.windows(4).position(|w| w == b"IDAT").unwrap();
    bad_crc[idat + 6] ^= 0x40;
    assert!(matches!(
        decode(&bad_crc, &full),
        Err(DecodeError::Corrupt { .. })
    ));
}

#[test]
fn bombs_are_refused_from_the_header() {
    // IHDR declaring 65535x65535 and no image data: refused before anything is allocated.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&65535u32.to_be_bytes());
    png.extend_from_slice(&65535u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let err = decode(&png, &DecodeRequest::full(ColorMode::Rgb)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyPixels {
                height: 65535,
                width: 65535,
                ..
            }
        ),
        "{err}"
    );
    // SOI, then a baseline SOF0 for 65535x65535x3.
    let jpeg = [
        0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xFF, 0xFF, 0xFF, 0xFF, 3, 1, 0x22, 0, 2, 0x11, 1, 3,
        0x11, 1,
    ];
    assert_eq!(probe(&jpeg).unwrap().height, 65535);
    assert!(matches!(
        decode(&jpeg, &DecodeRequest::full(ColorMode::Rgb)),
        Err(DecodeError::TooManyPixels { .. })
    ));
    // Under the limit, the same header is a truncated file, not a crash.
    let roomy = DecodeRequest {
        max_pixels: u64::MAX,
        ..DecodeRequest::full(ColorMode::Rgb)
    };
    assert!(decode(&jpeg, &roomy).is_err());
}

#[test]
fn requests_are_checked() {
    let (png, _) = rgb_png();
    let odd = DecodeRequest {
        max_scale_denom: 3,
        ..DecodeRequest::full(ColorMode::Rgb)
    };
    assert!(matches!(
        decode(&png, &odd),
        Err(DecodeError::BadRequest { .. })
    ));
    let outside = DecodeRequest {
        region: Some(Region {
            top: 3,
            left: 0,
            height: 2,
            width: 1,
        }),
        ..DecodeRequest::full(ColorMode::Rgb)
    };
    assert!(matches!(
        decode(&png, &outside),
        Err(DecodeError::BadRequest { .. })
    ));
}
