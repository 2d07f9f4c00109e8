import{w as a,x as b}from"./chunk-FJVBOHDF.js";import"./chunk-AIYMQX7V.js";export{b as decodeImageFrame,a as postProcessDecodedPixels};
