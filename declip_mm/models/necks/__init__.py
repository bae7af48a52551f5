from .simple_pyramid import SimplePyramidResampler, check_pyramid_scales

__all__ = ['SimplePyramidResampler', 'check_pyramid_scales']
