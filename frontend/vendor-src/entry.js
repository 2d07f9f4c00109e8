// The one module the app imports for Cornerstone3D (docs/frontend.md "The vendored
// Cornerstone3D"): core, tools and the DICOM image loader, bundled by
// scripts/build-vendor.sh into frontend/vendor/cornerstone/.
export * as core from "@cornerstonejs/core";
export * as tools from "@cornerstonejs/tools";
export { default as dicomImageLoader } from "@cornerstonejs/dicom-image-loader";
export * as dicomImageLoaderModule from "@cornerstonejs/dicom-image-loader";
