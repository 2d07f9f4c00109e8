import{x as a,y as b}from"./chunk-ZI4KUONM.js";import"./chunk-EX7TRSJS.js";export{b as decodeImageFrame,a as postProcessDecodedPixels};
